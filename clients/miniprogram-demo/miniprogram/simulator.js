// Playing the phone's part through identityd dev's WeChat simulator, for DevTools.
// The simulator issues the one-time codes WeChat would: POST /sim/wx.login {appid, user} for
// wx.login, POST /sim/getPhoneNumber {appid, user} for the phone-number button. Everything
// else (requests, uploads, storage) is DevTools' own wx. Never used when config.simulator.url
// is empty.

// Asks the simulator for a code; calls back with it or with an error message.
function simulatorCode(wx, url, path, body, done) {
  wx.request({
    url: url + path,
    method: 'POST',
    data: body,
    header: { 'content-type': 'application/json' },
    success(res) {
      const code = res.statusCode === 200 && res.data && res.data.code
      if (typeof code === 'string' && code) done(null, code)
      else done(`simulator ${path}: HTTP ${res.statusCode}`)
    },
    fail(err) {
      done(`simulator ${path}: ${(err && err.errMsg) || 'unreachable'}`)
    },
  })
}

// null when `settings.url` is empty; else { wx, phoneEvent }:
// - `wx`: the given wx with login() taking its code from the simulator (callback style, as
//   wx.login: success({code, errMsg}), fail({errMsg}), complete);
// - `phoneEvent(e)`: a promise of the bindgetphonenumber event to hand the SDK, its code from
//   the simulator, unless the person refused (then `e` itself, so the SDK sees the refusal).
function createSimulator(settings, appid, wx) {
  if (!settings || !settings.url) return null
  const url = settings.url.replace(/\/+$/, '')
  const person = settings.person

  const simulatedWx = Object.create(wx)
  simulatedWx.login = (options = {}) => {
    simulatorCode(wx, url, '/sim/wx.login', { appid, user: person }, (error, code) => {
      if (error) {
        if (options.fail) options.fail({ errMsg: `login:fail ${error}` })
      } else if (options.success) {
        options.success({ code, errMsg: 'login:ok' })
      }
      if (options.complete) options.complete()
    })
  }

  function phoneEvent(e) {
    const errMsg = (e && e.detail && e.detail.errMsg) || ''
    if (/deny|cancel/.test(errMsg)) return Promise.resolve(e)
    return new Promise(resolve => {
      simulatorCode(wx, url, '/sim/getPhoneNumber', { appid, user: person }, (error, code) => {
        // No code from the simulator: hand on DevTools' own event, which the SDK judges.
        resolve(error ? e : { type: e.type, detail: { code, errMsg: 'getPhoneNumber:ok' } })
      })
    })
  }

  return { wx: simulatedWx, phoneEvent }
}

module.exports = { createSimulator }
