const { IdentityClient } = require('identityd-miniprogram')
const config = require('./config')
const { createLaunch } = require('./launch')
const { createSimulator } = require('./simulator')

// In DevTools against `identityd dev`, codes come from its WeChat simulator (config.js).
const simulator = createSimulator(config.simulator, config.appid, wx)
const options = { baseUrl: config.baseUrl, appid: config.appid }
if (simulator) options.wx = simulator.wx
const identity = new IdentityClient(options)

App({
  identity,
  launch: createLaunch(identity),
  simulator,

  // Silent login: no button, no prompt. Failure shows on the pages with a retry button.
  onLaunch() {
    this.launch.login()
  },
})
