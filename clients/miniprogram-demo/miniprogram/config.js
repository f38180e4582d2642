// The one place the demo learns where identityd runs and which app it is.
// `identityd dev` listens on 127.0.0.1:8080 and configures the demo app wxd000000000000001
// (api/src/dev.rs); project.config.json names the same appid. Over plain http, so DevTools'
// "urlCheck" is off in project.config.json.
module.exports = {
  baseUrl: 'http://127.0.0.1:8080',
  appid: 'wxd000000000000001',

  // `identityd dev` asks its built-in WeChat simulator, not WeChat, to check login codes, so a
  // code from DevTools' real wx.login would be refused. So the demo plays the phone's part
  // through the simulator `identityd dev` starts on 127.0.0.1:9080 (simulator.js), as the
  // person named `person`. Set `url` to '' against a real deployment: WeChat's own wx.login
  // and phone button are then used.
  simulator: {
    url: 'http://127.0.0.1:9080',
    person: 'alice',
  },
}
