const { IdentityClient } = require('identityd-miniprogram')
const config = require('./config')
const { createLaunch } = require('./launch')

const identity = new IdentityClient({ baseUrl: config.baseUrl, appid: config.appid })

App({
  identity,
  launch: createLaunch(identity),

  // Silent login: no button, no prompt. Failure shows on the pages with a retry button.
  onLaunch() {
    this.launch.login()
  },
})
