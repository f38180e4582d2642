// The one place the demo learns where identityd runs and which app it is.
// `identityd dev` listens on 127.0.0.1:8080 and configures the demo app wxd000000000000001
// (api/src/dev.rs); project.config.json names the same appid, so DevTools' wx.login codes are
// for that app. Over plain http, so DevTools' "urlCheck" is off in project.config.json.
module.exports = {
  baseUrl: 'http://127.0.0.1:8080',
  appid: 'wxd000000000000001',
}
