// The sessions page rendered by miniprogram-simulate: the list, the current one marked,
// "log out this device" for the others, and logout of this one.
const test = require('node:test')
const assert = require('node:assert/strict')
const { fakeApp, openPage, settle, text, attr } = require('./support/page')
const { FakeIdentity, IdentityError, user } = require('./support/fake-identity')

const PHONE = {
  session_id: '0190a1b2-0000-7000-8000-0000000000aa',
  appid: 'wxd000000000000001',
  device: { user_agent: 'Mozilla/5.0 … MicroMessenger/8.0.50', platform: 'iOS', wechat_version: '8.0.50' },
  client_ip: '127.0.0.1',
  created_at: '2026-12-05T09:30:00Z',
  last_refreshed_at: null,
  current: true,
}
const TABLET = {
  session_id: '0190a1b2-0000-7000-8000-0000000000bb',
  appid: 'wxd000000000000001',
  device: { user_agent: 'Mozilla/5.0 … MicroMessenger/8.0.49', platform: 'Android', wechat_version: '8.0.49' },
  client_ip: '127.0.0.2',
  created_at: '2026-12-04T08:00:00Z',
  last_refreshed_at: '2026-12-05T07:15:42Z',
  current: false,
}
const LAPTOP = {
  session_id: '0190a1b2-0000-7000-8000-0000000000cc',
  appid: 'wxd000000000000002',
  device: null,
  client_ip: null,
  created_at: '2026-12-01T08:00:00Z',
  last_refreshed_at: null,
  current: false,
}

// The service answers newest first, so this device need not come first.
async function sessionsPage(sessions = [TABLET, PHONE, LAPTOP]) {
  const identity = new FakeIdentity().answer('login', user()).answer('sessions', sessions)
  const app = fakeApp(identity)
  const page = openPage('sessions', app)
  await app.launch.login()
  await settle()
  return { page, identity, app }
}

test('lists the sessions once logged in, this device first and marked', async () => {
  const { page, identity } = await sessionsPage()
  assert.equal(identity.callsTo('sessions').length, 1)
  const rows = page.querySelectorAll('.session')
  assert.equal(rows.length, 3)
  assert.match(rows[0].dom.textContent, /iOS · WeChat 8\.0\.50/)
  assert.match(rows[0].dom.textContent, /This device/)
  assert.match(rows[0].dom.textContent, /Logged in 2026-12-05 09:30 UTC/)

  assert.match(rows[1].dom.textContent, /Android · WeChat 8\.0\.49/)
  assert.match(rows[1].dom.textContent, /last active 2026-12-05 07:15 UTC/)
  assert.doesNotMatch(rows[1].dom.textContent, /This device/)
  assert.match(rows[2].dom.textContent, /Unknown device/)
  assert.equal(page.querySelectorAll('.session-current').length, 1)
  // One "Log out" (this device) and one "log out this device" per other session, in row order.
  assert.equal(page.querySelectorAll('.logout').length, 1)
  const ends = page.querySelectorAll('.end-session')
  assert.deepEqual(ends.map(button => attr(button, 'data-id')), [TABLET.session_id, LAPTOP.session_id])
  assert.deepEqual(ends.map(button => button.dom.textContent.trim()), ['Log out this device', 'Log out this device'])
})

test('"log out this device" ends that session, by its id, and drops it from the list', async () => {
  const { page, identity } = await sessionsPage()
  identity.answer('endSession', undefined)
  page.querySelectorAll('.end-session')[1].dispatchEvent('tap')
  await settle()

  assert.deepEqual(identity.callsTo('endSession'), [[LAPTOP.session_id]])
  const left = page.querySelectorAll('.session')
  assert.equal(left.length, 2)
  assert.doesNotMatch(page.dom.textContent, /Unknown device/)
  assert.equal(text(page, '.message'), 'That device is logged out.')
})

test('a failed end of a session keeps it listed and says why', async () => {
  const { page, identity } = await sessionsPage()
  identity.answer('endSession', new IdentityError('network_error', 0))
  page.querySelectorAll('.end-session')[0].dispatchEvent('tap')
  await settle()
  assert.deepEqual(identity.callsTo('endSession'), [[TABLET.session_id]])
  assert.equal(page.querySelectorAll('.session').length, 3)
  assert.match(text(page, '.message.error'), /Cannot reach the identity service/)
})

test('a session that ended meanwhile (404) leaves the list, without an error', async () => {
  const { page, identity } = await sessionsPage()
  identity.answer('endSession', new IdentityError('not_found', 404))
  page.querySelectorAll('.end-session')[0].dispatchEvent('tap')
  await settle()
  assert.equal(page.querySelectorAll('.session').length, 2)
  assert.doesNotMatch(page.dom.textContent, /Android/)
  assert.equal(text(page, '.message.info'), 'That device was already logged out.')
})

test('logging out this device clears the list and offers to log in again', async () => {
  const { page, identity, app } = await sessionsPage()
  identity.answer('logout', undefined)
  page.querySelector('.logout').dispatchEvent('tap')
  await settle()

  assert.equal(identity.callsTo('logout').length, 1)
  assert.equal(app.launch.state().status, 'logged_out')
  assert.equal(page.querySelectorAll('.session').length, 0)
  assert.equal(text(page, '.banner-logged-out', '#login'), 'You are logged out on this device.')

  identity.answer('login', user()).answer('sessions', [PHONE])
  page.querySelector('#login').querySelector('.banner-login').dispatchEvent('tap')
  await settle()
  assert.equal(identity.callsTo('login').length, 2)
  assert.equal(page.querySelectorAll('.session').length, 1)
})

test('a logout whose call fails still leaves this device logged out', async () => {
  const { page, identity, app } = await sessionsPage()
  identity.answer('logout', new IdentityError('network_error', 0))
  page.querySelector('.logout').dispatchEvent('tap')
  await settle()
  assert.equal(app.launch.state().status, 'logged_out')
  assert.match(text(page, '.message.error'), /Cannot reach the identity service/)
})

test('coming back to the page lists again; the first show does not list twice', async () => {
  const { page, identity } = await sessionsPage()
  assert.equal(identity.callsTo('sessions').length, 1)
  identity.answer('sessions', [PHONE])
  page.instance.onShow()
  await settle()
  assert.equal(identity.callsTo('sessions').length, 2)
  assert.equal(page.querySelectorAll('.session').length, 1)
})

test('nothing is asked of the service before the launch login has succeeded', async () => {
  const identity = new FakeIdentity().answer('login', new IdentityError('wechat_login_failed', 0))
  const app = fakeApp(identity)
  const page = openPage('sessions', app)
  await app.launch.login()
  await settle()
  assert.equal(identity.callsTo('sessions').length, 0)
  assert.equal(text(page, '.banner-error', '#login'), 'WeChat could not log you in just now. Please try again.')
})
