// The pages' plain functions, the error wording and the launch state, under Node alone.
const test = require('node:test')
const assert = require('node:assert/strict')
const profile = require('../miniprogram/pages/profile/logic')
const sessions = require('../miniprogram/pages/sessions/logic')
const { describeError } = require('../miniprogram/errors')
const { createLaunch } = require('../miniprogram/launch')
const { FakeIdentity, IdentityError, user } = require('./support/fake-identity')

test('saveRequest sends only what changed, trimmed', () => {
  assert.deepEqual(profile.saveRequest({ nickname: ' Ada ', savedNickname: '', avatarTempFilePath: '' }), {
    request: { nickname: 'Ada' },
  })
  assert.deepEqual(profile.saveRequest({ nickname: 'Ada', savedNickname: 'Ada', avatarTempFilePath: 'wxfile://t/a.png' }), {
    request: { avatarTempFilePath: 'wxfile://t/a.png' },
  })
  assert.match(profile.saveRequest({ nickname: 'Ada ', savedNickname: 'Ada' }).error, /Nothing changed/)
})

test('saveRequest keeps the service rule: 1 to 64 characters, counted as characters, no control characters', () => {
  assert.match(profile.saveRequest({ nickname: '   ', savedNickname: 'Ada' }).error, /enter a nickname/)
  const emoji64 = '😀'.repeat(64) // 128 UTF-16 units, 64 characters
  assert.deepEqual(profile.saveRequest({ nickname: emoji64 }).request, { nickname: emoji64 })
  assert.match(profile.saveRequest({ nickname: '😀'.repeat(65) }).error, /at most 64/)
  assert.match(profile.saveRequest({ nickname: 'A\u0007da' }).error, /control/)
})

test('profileView reads the user the service answers and masks the phone', () => {
  assert.deepEqual(profile.profileView(user()), { nickname: '', avatarUrl: '', phone: '' })
  const view = profile.profileView(
    user({
      profile: { nickname: 'Ada', avatar_url: 'http://127.0.0.1:8080/v1/avatars/x' },
      phone: { phone_number: '+86 13800138000', pure_phone_number: '13800138000', country_code: '86' },
    })
  )
  assert.deepEqual(view, { nickname: 'Ada', avatarUrl: 'http://127.0.0.1:8080/v1/avatars/x', phone: '138****8000' })
  assert.equal(profile.maskPhone('12345'), '12345')
})

test('a nickname review is a refusal only when WeChat says so', () => {
  assert.equal(profile.nicknameReviewMessage({ pass: true, timeout: false }), '')
  assert.equal(profile.nicknameReviewMessage({ pass: false, timeout: true }), '')
  assert.match(profile.nicknameReviewMessage({ pass: false, timeout: false }), /did not accept/)
})

test('sessionRows puts this device first and names devices from what the service knows', () => {
  const rows = sessions.sessionRows([
    { session_id: 'b', device: { user_agent: 'curl/8.5.0' }, created_at: '2026-12-05T10:00:00Z', current: false },
    { session_id: 'a', device: { platform: 'iOS' }, created_at: '2026-12-04T10:00:00Z', last_refreshed_at: '2026-12-05T11:22:33Z', current: true },
  ])
  assert.deepEqual(rows.map(row => [row.id, row.device, row.current]), [
    ['a', 'iOS', true],
    ['b', 'curl/8.5.0', false],
  ])
  assert.equal(rows[0].lastSeen, 'last active 2026-12-05 11:22 UTC')
  assert.equal(rows[1].lastSeen, '')
  assert.equal(sessions.deviceName({ user_agent: 'x'.repeat(60) }).length, 40)
  assert.equal(sessions.when('not a time'), 'at an unknown time')
})

test('errors are told in words; rate limits say how long to wait', () => {
  assert.match(describeError(new IdentityError('content_rejected', 422)), /content check/)
  assert.equal(describeError(Object.assign(new IdentityError('rate_limited', 429), { retryAfter: 30 })),
    'Too many attempts. Please wait about 30 s and try again.')
  assert.equal(describeError(new IdentityError('invalid_request', 400, 'nickname must be 1 to 64 characters')),
    'The service refused this: nickname must be 1 to 64 characters')
  assert.equal(describeError(new IdentityError('something_new', 400)), 'Something went wrong (something_new). Please try again.')
  assert.equal(describeError(new TypeError('x is undefined')), 'Something went wrong (unknown). Please try again.')
})

test('launch: watchers see every change until they stop watching; a retry after failure logs in again', async () => {
  const identity = new FakeIdentity().answer('login', new IdentityError('network_error', 0)).answer('login', user())
  const launch = createLaunch(identity)
  const seen = []
  const stop = launch.watch(state => seen.push(state.status))
  await launch.login()
  await launch.login()
  launch.loggedOut()
  stop()
  launch.userChanged(user())
  assert.deepEqual(seen, ['pending', 'pending', 'failed', 'pending', 'ready', 'logged_out'])
  assert.equal(identity.callsTo('login').length, 2)
})
