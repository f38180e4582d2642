// The profile page rendered by miniprogram-simulate: what shows, and what taps do.
const test = require('node:test')
const assert = require('node:assert/strict')
const { fakeApp, openPage, settle, text, attr } = require('./support/page')
const { FakeIdentity, IdentityError, user } = require('./support/fake-identity')

async function loggedInPage(loginUser = user(), simulator = null) {
  const identity = new FakeIdentity().answer('login', loginUser)
  const app = Object.assign(fakeApp(identity), { simulator })
  const page = openPage('profile', app)
  await app.launch.login()
  await settle()
  return { page, identity, app }
}

test('while the launch login runs the page says so, and shows no form', async () => {
  const page = openPage('profile', fakeApp())
  await settle()
  assert.equal(text(page, '.banner-pending', '#login'), 'Logging in…')
  assert.equal(page.querySelector('#save'), undefined)
})

test('a failed launch login is shown in words with a retry that logs in again', async () => {
  const identity = new FakeIdentity()
    .answer('login', new IdentityError('network_error', 0))
    .answer('login', user({ profile: { nickname: 'Ada' } }))
  const app = fakeApp(identity)
  const page = openPage('profile', app)
  await app.launch.login()
  await settle()
  assert.match(text(page, '.banner-error', '#login'), /Cannot reach the identity service/)
  assert.equal(page.querySelector('#save'), undefined)

  page.querySelector('#login').querySelector('.banner-retry').dispatchEvent('tap')
  await settle()
  assert.equal(identity.callsTo('login').length, 2)
  assert.equal(page.querySelector('#login').querySelector('.banner-error'), undefined)
  assert.equal(page.instance.data.nickname, 'Ada')
  assert.ok(page.querySelector('#save'))
})

test('the saved avatar is shown from our URL and the nickname fills the input', async () => {
  const { page } = await loggedInPage(
    user({ profile: { nickname: 'Ada', avatar_url: 'http://127.0.0.1:8080/v1/avatars/av1' } })
  )
  assert.equal(attr(page.querySelector('.avatar-saved'), 'src'), 'http://127.0.0.1:8080/v1/avatars/av1')
  assert.equal(attr(page.querySelector('#nickname'), 'value'), 'Ada')
  assert.equal(attr(page.querySelector('#nickname'), 'type'), 'nickname')
})

test('choosing an avatar shows the chosen picture as a preview, not yet saved', async () => {
  const { page, identity } = await loggedInPage()
  assert.ok(page.querySelector('.avatar-empty'))
  const button = page.querySelector('#choose-avatar')
  assert.equal(attr(button, 'open-type'), 'chooseAvatar')

  button.dispatchEvent('chooseavatar', { detail: { avatarUrl: 'wxfile://tmp/avatar-1.jpeg' } })
  await settle()
  assert.equal(attr(page.querySelector('.avatar-preview'), 'src'), 'wxfile://tmp/avatar-1.jpeg')
  assert.equal(text(page, '.avatar-hint'), 'Not saved yet')
  assert.equal(identity.callsTo('updateProfile').length, 0)
})

test('save sends the temporary avatar file and the typed nickname, then shows our avatar URL', async () => {
  const { page, identity, app } = await loggedInPage()
  identity.answer(
    'updateProfile',
    user({ profile: { nickname: 'Grace', avatar_url: 'http://127.0.0.1:8080/v1/avatars/av2' } })
  )
  page.querySelector('#choose-avatar').dispatchEvent('chooseavatar', { detail: { avatarUrl: 'wxfile://tmp/a.png' } })
  page.querySelector('#nickname').dispatchEvent('input', { detail: { value: '  Grace ' } })
  await settle()
  page.querySelector('#save').dispatchEvent('tap')
  await settle()

  assert.deepEqual(identity.callsTo('updateProfile'), [[{ nickname: 'Grace', avatarTempFilePath: 'wxfile://tmp/a.png' }]])
  assert.equal(page.querySelector('.avatar-preview'), undefined)
  assert.equal(attr(page.querySelector('.avatar-saved'), 'src'), 'http://127.0.0.1:8080/v1/avatars/av2')
  assert.equal(text(page, '.message'), 'Saved.')
  assert.equal(attr(page.querySelector('#nickname'), 'value'), 'Grace')
  assert.equal(app.launch.state().user.profile.nickname, 'Grace')
})

test('a nickname WeChat fills in on blur is the one saved', async () => {
  const { page, identity } = await loggedInPage(user({ profile: { nickname: 'Ada' } }))
  identity.answer('updateProfile', user({ profile: { nickname: '微信用户甲' } }))
  page.querySelector('#nickname').dispatchEvent('blur', { detail: { value: '微信用户甲' } })
  await settle()
  page.querySelector('#save').dispatchEvent('tap')
  await settle()
  assert.deepEqual(identity.callsTo('updateProfile'), [[{ nickname: '微信用户甲' }]])
})

test('content_rejected from the service is shown in words and the preview stays', async () => {
  const { page, identity } = await loggedInPage()
  identity.answer('updateProfile', new IdentityError('content_rejected', 422, 'label 20002'))
  page.querySelector('#choose-avatar').dispatchEvent('chooseavatar', { detail: { avatarUrl: 'wxfile://tmp/b.png' } })
  await settle()
  page.querySelector('#save').dispatchEvent('tap')
  await settle()

  assert.equal(
    text(page, '.message'),
    "WeChat's content check did not accept this nickname or picture. Please choose another one."
  )
  assert.doesNotMatch(text(page, '.message'), /20002/)
  assert.equal(attr(page.querySelector('.avatar-preview'), 'src'), 'wxfile://tmp/b.png')
  assert.equal(page.instance.data.saving, false)
})

test('WeChat refusing the nickname in its own review is shown before anything is sent', async () => {
  const { page, identity } = await loggedInPage()
  page.querySelector('#nickname').dispatchEvent('nicknamereview', { detail: { pass: false, timeout: false } })
  await settle()
  assert.match(text(page, '.message'), /did not accept this nickname/)
  assert.equal(identity.callsTo('updateProfile').length, 0)
})

test('saving with nothing changed sends nothing and says why', async () => {
  const { page, identity } = await loggedInPage(user({ profile: { nickname: 'Ada' } }))
  page.querySelector('#save').dispatchEvent('tap')
  await settle()
  assert.equal(identity.callsTo('updateProfile').length, 0)
  assert.match(text(page, '.message'), /Nothing changed/)
})

test('the phone button hands its event to bindPhone and shows the bound number masked', async () => {
  const { page, identity, app } = await loggedInPage()
  const bound = user({ phone: { phone_number: '+86 13800138000', pure_phone_number: '13800138000', country_code: '86' } })
  identity.answer('bindPhone', { status: 'bound', user: bound })
  const button = page.querySelector('#phone')
  assert.equal(attr(button, 'open-type'), 'getPhoneNumber')
  button.dispatchEvent('getphonenumber', { detail: { code: 'phone-code-1', errMsg: 'getPhoneNumber:ok' } })
  await settle()

  const [[event]] = identity.callsTo('bindPhone')
  assert.equal(event.detail.code, 'phone-code-1')
  assert.equal(text(page, '.phone'), '138****8000')
  assert.equal(text(page, '.message'), 'Phone number linked.')
  assert.equal(app.launch.state().user, bound)
})

test('refusing to share the phone number gets a polite message, not an error', async () => {
  const { page, identity } = await loggedInPage()
  identity.answer('bindPhone', { status: 'denied' })
  page.querySelector('#phone').dispatchEvent('getphonenumber', { detail: { errMsg: 'getPhoneNumber:fail user deny' } })
  await settle()

  assert.equal(
    text(page, '.message'),
    'No problem: your phone number was not shared. You can share it any time later.'
  )
  assert.equal(page.querySelector('.message.error'), undefined)
  assert.equal(page.querySelector('.phone'), undefined)
})

test('a failed phone binding is shown in words', async () => {
  const { page, identity } = await loggedInPage()
  identity.answer('bindPhone', new IdentityError('wechat_unavailable', 503))
  page.querySelector('#phone').dispatchEvent('getphonenumber', { detail: { code: 'c' } })
  await settle()
  assert.equal(text(page, '.message.error'), 'WeChat is busy at the moment. Please try again shortly.')
})

test('against identityd dev the phone code comes from the simulator before bindPhone', async () => {
  const calls = []
  const simulator = {
    phoneEvent(e) {
      calls.push(e.detail)
      return Promise.resolve({ type: e.type, detail: { code: 'sim-phone-code', errMsg: 'getPhoneNumber:ok' } })
    },
  }
  const { page, identity } = await loggedInPage(user(), simulator)
  identity.answer('bindPhone', { status: 'bound', user: user({ phone: { pure_phone_number: '13900001111' } }) })
  page.querySelector('#phone').dispatchEvent('getphonenumber', { detail: { code: 'devtools-code', errMsg: 'getPhoneNumber:ok' } })
  await settle()
  assert.deepEqual(calls, [{ code: 'devtools-code', errMsg: 'getPhoneNumber:ok' }])
  assert.equal(identity.callsTo('bindPhone')[0][0].detail.code, 'sim-phone-code')
  assert.equal(text(page, '.phone'), '139****1111')
})

test('back on the page, an avatar WeChat rejected after the upload is gone and the page says so', async () => {
  const { page, identity } = await loggedInPage(
    user({ profile: { nickname: 'Ada', avatar_url: 'http://127.0.0.1:8080/v1/avatars/av1' } })
  )
  identity.answer('me', user({ profile: { nickname: 'Ada' } }))
  page.instance.onShow()
  await settle()
  assert.equal(identity.callsTo('me').length, 1)
  assert.equal(page.querySelector('.avatar-saved'), undefined)
  assert.ok(page.querySelector('.avatar-empty'))
  assert.equal(text(page, '.message.error'), "WeChat's content check removed your avatar. Please choose another one.")
})

test('re-reading the user keeps a nickname being typed', async () => {
  const { page, identity } = await loggedInPage(user({ profile: { nickname: 'Ada' } }))
  page.querySelector('#nickname').dispatchEvent('input', { detail: { value: 'Ada L' } })
  await settle()
  identity.answer('me', user({ profile: { nickname: 'Ada' } }))
  page.instance.onShow()
  await settle()
  assert.equal(page.instance.data.nickname, 'Ada L')
  assert.equal(page.querySelector('.message'), undefined)
})
