// The launch login's state at the top of each page: nothing once logged in, a spinner line
// while logging in, the reason and a retry button after a failure, a login button after logout.
Component({
  options: { addGlobalClass: true },
  properties: {
    status: { type: String, value: 'pending' },
    error: { type: String, value: '' },
  },
  methods: {
    onRetry() {
      this.triggerEvent('retry')
    },
  },
})
