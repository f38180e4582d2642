// miniprogram-simulate renders through j-component into a DOM, which its own suite gets from
// jest's jsdom environment. Under node:test, global-jsdom provides the same globals, except
// where Node 20 has its own: Node's Event and CustomEvent are not jsdom's, and jsdom refuses
// to dispatch them ("parameter 1 is not of type 'Event'"), so jsdom's replace them.
require('global-jsdom/register')

for (const name of ['Event', 'CustomEvent', 'EventTarget']) {
  global[name] = window[name]
}
