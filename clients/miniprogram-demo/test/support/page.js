// Renders a page of the demo with miniprogram-simulate (WeChat's component test tool), its
// WXML compiled by the tool's JavaScript compiler, against a fake app whose `identity` is a
// FakeIdentity and whose `launch` is the real one (miniprogram/launch.js).
require('./dom')
const path = require('node:path')
const simulate = require('miniprogram-simulate')
const { createLaunch } = require('../../miniprogram/launch')
const { FakeIdentity } = require('./fake-identity')

const ROOT = path.join(__dirname, '..', '..', 'miniprogram')

// `identity` scripted by the caller; the app's launch login is *not* started: call
// `app.launch.login()` (or `loggedIn`) so each test says how launch went.
function fakeApp(identity = new FakeIdentity()) {
  return { identity, launch: createLaunch(identity) }
}

// The page `name` rendered and loaded (onLoad, then onShow as WeChat does), with getApp()
// answering `app`.
function openPage(name, app) {
  global.getApp = () => app
  return renderPage(name)
}

// The page `name` rendered and loaded, with whatever app getApp() answers already.
function renderPage(name) {
  const id = simulate.load(path.join(ROOT, 'pages', name, 'index'), { compiler: 'simulate', rootPath: ROOT })
  const page = simulate.render(id)
  page.attach(document.createElement('parent-wrapper'))
  page.instance.onLoad({})
  if (page.instance.onShow) page.instance.onShow()
  return page
}

// Lets promises and j-component's asynchronous event dispatch run.
async function settle() {
  for (let i = 0; i < 5; i++) await simulate.sleep(0)
}

// The trimmed text of the first node matching `selector` (searching into custom components
// such as login-banner when `within` names one), or null when nothing matches.
function text(page, selector, within) {
  const scope = within ? page.querySelector(within) : page
  const node = scope && scope.querySelector(selector)
  return node ? node.dom.textContent.trim() : null
}

// An attribute as the WXML set it (built-in components are placeholders in the simulator, so
// it is read from the rendered tree, not from the DOM).
function attr(node, name) {
  const found = node.toJSON().attrs.find(a => a.name === name)
  return found ? found.value : undefined
}

module.exports = { fakeApp, openPage, renderPage, settle, text, attr, simulate }
