// What every page showing the login banner shares: the banner's `login` state, the app's
// identity, launch and simulator as `this.*` from onLoad, the banner's retry, and the watch on
// the launch login, which calls the page's own `showLogin(state)` at each change.
module.exports = Behavior({
  data: {
    login: { status: 'pending', error: '' },
  },

  methods: {
    onLoad() {
      const app = getApp()
      this.identity = app.identity
      this.launch = app.launch
      this.simulator = app.simulator
      this.unwatch = this.launch.watch(state => this.showLogin(state))
    },

    onUnload() {
      if (this.unwatch) this.unwatch()
    },

    onRetry() {
      this.launch.login()
    },
  },
})
