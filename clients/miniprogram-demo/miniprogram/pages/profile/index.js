// Built with Component() (as WeChat allows for pages) so miniprogram-simulate can render it in
// tests; page lifecycle methods therefore sit in `methods`.
const { describeError } = require('../../errors')
const logic = require('./logic')

Component({
  data: {
    login: { status: 'pending', error: '' },
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

    showLogin(state) {
      const update = { login: { status: state.status, error: state.error } }
      if (state.user) {
        const view = logic.profileView(state.user)
        Object.assign(update, {
          nickname: view.nickname,
          savedNickname: view.nickname,
          avatarUrl: view.avatarUrl,
          phone: view.phone,
        })
      }
      this.setData(update)
    },

    onRetry() {
      this.launch.login()
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
          this.setData({ saving: false, avatarPreview: '', message: { kind: 'info', text: 'Saved.' } })
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
