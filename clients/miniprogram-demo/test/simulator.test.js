// simulator.js: DevTools' wx.login and phone button played through identityd dev's simulator.
const test = require('node:test')
const assert = require('node:assert/strict')
const { createSimulator } = require('../miniprogram/simulator')
const { fakeWx } = require('./support/fake-wx')

const APPID = 'wxd000000000000001'
const SETTINGS = { url: 'http://127.0.0.1:41234/', person: 'alice' }

function login(wx) {
  return new Promise(resolve => {
    const seen = []
    wx.login({
      success: res => seen.push(['success', res]),
      fail: err => seen.push(['fail', err]),
      complete: () => resolve(seen),
    })
  })
}

test('without a simulator URL nothing is replaced', () => {
  assert.equal(createSimulator({ url: '', person: 'alice' }, APPID, fakeWx()), null)
  assert.equal(createSimulator(undefined, APPID, fakeWx()), null)
})

test("wx.login's code comes from the simulator, for the configured app and person", async () => {
  const wx = fakeWx([{ statusCode: 200, data: { code: 'sim-code-1' } }])
  const simulator = createSimulator(SETTINGS, APPID, wx)
  assert.deepEqual(await login(simulator.wx), [['success', { code: 'sim-code-1', errMsg: 'login:ok' }]])
  const [request] = wx.requests
  assert.equal(request.url, 'http://127.0.0.1:41234/sim/wx.login')
  assert.equal(request.method, 'POST')
  assert.deepEqual(request.data, { appid: APPID, user: 'alice' })
  // Everything else is DevTools' own wx.
  assert.equal(simulator.wx.getStorageSync, wx.getStorageSync)
})

test('a simulator that is down or refuses makes wx.login fail, as WeChat would', async () => {
  const wx = fakeWx([{ errMsg: 'request:fail connect ECONNREFUSED' }, { statusCode: 400, data: 'user: must be 1 to 256 bytes' }])
  const simulator = createSimulator(SETTINGS, APPID, wx)
  const [[kind, err]] = await login(simulator.wx)
  assert.equal(kind, 'fail')
  assert.match(err.errMsg, /^login:fail simulator \/sim\/wx\.login: request:fail connect ECONNREFUSED$/)
  const [[kind2, err2]] = await login(simulator.wx)
  assert.equal(kind2, 'fail')
  assert.match(err2.errMsg, /HTTP 400/)
})

test("the phone button's code comes from the simulator unless the person refused", async () => {
  const wx = fakeWx([{ statusCode: 200, data: { code: 'phone-code-9' } }])
  const simulator = createSimulator(SETTINGS, APPID, wx)
  const allowed = await simulator.phoneEvent({ type: 'getphonenumber', detail: { code: 'devtools-code', errMsg: 'getPhoneNumber:ok' } })
  assert.deepEqual(allowed.detail, { code: 'phone-code-9', errMsg: 'getPhoneNumber:ok' })
  assert.equal(wx.requests[0].url, 'http://127.0.0.1:41234/sim/getPhoneNumber')
  assert.deepEqual(wx.requests[0].data, { appid: APPID, user: 'alice' })

  const refusal = { type: 'getphonenumber', detail: { errMsg: 'getPhoneNumber:fail user deny' } }
  assert.equal(await simulator.phoneEvent(refusal), refusal)
  assert.equal(wx.requests.length, 1)
})
