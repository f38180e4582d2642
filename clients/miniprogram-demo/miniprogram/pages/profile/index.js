// Built with Component() (as WeChat allows for pages) so miniprogram-simulate can render it in
// tests; page lifecycle methods therefore sit in `methods`.
const { describeError } = require('../../errors')
const loginBanner = require('../../behaviors/login-banner')
const logic = require('./logic')

Component({
  behaviors: [loginBanner],

  data: {
    nickname: '', // what the input holds
    savedNickname: '', // what the service holds
    avatarUrl: '', // our URL, served by identityd
    avatarPreview: '', // chooseAvatar's temporary file, until saved
    phone: '',
    saving: false,
    binding: false,
    message: { kind: '', text: '' },
  },

  methods: {
    showLogin(state) {
      const update = { login: { status: state.status, error: state.error } }
      if (state.user) {
        const view = logic.profileView(state.user)
        Object.assign(update, { savedNickname: view.nickname, avatarUrl: view.avatarUrl, phone: view.phone })
        // Keep a nickname being typed; follow the service otherwise.
        if (this.data.nickname === this.data.savedNickname) update.nickname = view.nickname
      }
      this.setData(update)
    },

    // Back on the page: read the user again. WeChat judges an uploaded avatar later (the
    // service hears its verdict by push), and a rejected one is gone from the profile then.
    onShow() {
      if (this.shownBefore && this.data.login.status === 'ready') this.reload()
      this.shownBefore = true
    },

    reload() {
      const shownAvatar = this.data.avatarUrl
      return this.identity.me().then(
        user => {
          this.launch.userChanged(user)
          if (logic.avatarRemoved(shownAvatar, user)) {
            this.setData({ message: { kind: 'error', text: logic.AVATAR_REMOVED } })
          }
        },
        // A failed refresh leaves the page as it was; the next action will tell.
        () => {}
      )
    },

    onChooseAvatar(e) {
      this.setData({ avatarPreview: e.detail.avatarUrl, message: { kind: '', text: '' } })
    },

    // type="nickname" fills the field from WeChat's keyboard suggestion; some base libraries
    // report that only on blur, so both events update it.
    onNicknameInput(e) {
      this.setData({ nickname: e.detail.value })
    },

    onNicknameReview(e) {
      const text = logic.nicknameReviewMessage(e.detail)
      if (text) this.setData({ message: { kind: 'error', text } })
    },

    onSave() {
      if (this.data.saving) return
      const { request, error } = logic.saveRequest({
        nickname: this.data.nickname,
        savedNickname: this.data.savedNickname,
        avatarTempFilePath: this.data.avatarPreview,
      })
      if (error) {
        this.setData({ message: { kind: 'error', text: error } })
        return
      }
      this.setData({ saving: true, message: { kind: '', text: '' } })
      return this.identity.updateProfile(request).then(
        user => {
          this.setData({
            saving: false,
            avatarPreview: '',
            nickname: logic.profileView(user).nickname, // as stored: trimmed
            message: { kind: 'info', text: 'Saved.' },
          })
          this.launch.userChanged(user)
        },
        err => {
          this.setData({ saving: false, message: { kind: 'error', text: describeError(err) } })
        }
      )
    },

    onGetPhoneNumber(e) {
      if (this.data.binding) return
      this.setData({ binding: true, message: { kind: '', text: '' } })
      // Against `identityd dev`, the phone button's code comes from its WeChat simulator.
      const event = this.simulator ? this.simulator.phoneEvent(e) : Promise.resolve(e)
      return event.then(ev => this.identity.bindPhone(ev)).then(
        result => {
          this.setData({ binding: false, message: logic.phoneOutcome(result) })
          if (result.status === 'bound') this.launch.userChanged(result.user)
        },
        err => {
          this.setData({ binding: false, message: { kind: 'error', text: describeError(err) } })
        }
      )
    },
  },
})
