// Built with Component() (as WeChat allows for pages) so miniprogram-simulate can render it in
// tests; page lifecycle methods therefore sit in `methods`.
const { describeError } = require('../../errors')
const loginBanner = require('../../behaviors/login-banner')
const logic = require('./logic')

Component({
  behaviors: [loginBanner],

  data: {
    rows: [],
    loading: false,
    ending: '', // the session being ended
    message: { kind: '', text: '' },
  },

  methods: {
    showLogin(state) {
      const wasReady = this.data.login.status === 'ready'
      this.setData({ login: { status: state.status, error: state.error } })
      if (state.status === 'ready' && !wasReady) this.refresh()
      if (state.status !== 'ready') this.setData({ rows: [] })
    },

    // A tab page stays loaded: list again each time it comes back into view, another device
    // may have logged in meanwhile. The first show follows onLoad, which has listed already.
    onShow() {
      if (this.shownBefore && this.data.login.status === 'ready') this.refresh()
      this.shownBefore = true
    },

    onPullDownRefresh() {
      const done = () => wx.stopPullDownRefresh()
      if (this.data.login.status !== 'ready') return done()
      return this.refresh().then(done)
    },

    refresh() {
      this.setData({ loading: true })
      return this.identity.sessions().then(
        sessions => this.setData({ loading: false, rows: logic.sessionRows(sessions) }),
        err => this.setData({ loading: false, message: { kind: 'error', text: describeError(err) } })
      )
    },

    // "Log out this device" for another session: its tokens stop working at once. (The SDK on
    // that device, finding itself logged out, logs in silently again: a new session.)
    onEndSession(e) {
      const id = e.currentTarget.dataset.id
      if (!id || this.data.ending) return
      this.setData({ ending: id, message: { kind: '', text: '' } })
      const gone = text =>
        this.setData({
          ending: '',
          rows: this.data.rows.filter(row => row.id !== id),
          message: { kind: 'info', text },
        })
      return this.identity.endSession(id).then(
        () => gone('That device is logged out.'),
        err => {
          // 404: the session ended meanwhile (that device logged out, or it expired).
          if (err && err.code === 'not_found') return gone('That device was already logged out.')
          this.setData({ ending: '', message: { kind: 'error', text: describeError(err) } })
        }
      )
    },

    // The SDK clears its tokens even when the call fails (offline): this device is logged out
    // either way, so the failure is only mentioned.
    onLogout() {
      return this.identity.logout().then(
        () => this.launch.loggedOut(),
        err => {
          this.launch.loggedOut()
          this.setData({ message: { kind: 'error', text: describeError(err) } })
        }
      )
    },
  },
})
