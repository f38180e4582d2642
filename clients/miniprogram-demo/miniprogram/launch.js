// The app's login, shared by every page: one silent login at launch, whose outcome each page
// shows (pending, ready, failed with a retry button, or logged out on this device).
// The SDK already keeps one login in flight; this keeps the *state* so a page opened later
// still sees how launch went.

const { describeError } = require('./errors')

function createLaunch(identity) {
  let state = { status: 'pending', user: null, error: '' }
  let watchers = []
  let running = null

  function set(next) {
    state = next
    watchers.slice().forEach(watcher => watcher(state))
  }

  return {
    state() {
      return state
    },

    // Resolves with the user, or null after a failure (then the state says why): callers such
    // as onLaunch and a retry button have nobody to hand an exception to.
    login() {
      if (running) return running
      set({ status: 'pending', user: null, error: '' })
      running = identity.login().then(
        user => {
          running = null
          set({ status: 'ready', user, error: '' })
          return user
        },
        err => {
          running = null
          set({ status: 'failed', user: null, error: describeError(err) })
          return null
        }
      )
      return running
    },

    // A page changed the user (profile saved, phone bound): every page shows the new one.
    userChanged(user) {
      set({ status: 'ready', user, error: '' })
    },

    loggedOut() {
      set({ status: 'logged_out', user: null, error: '' })
    },

    // Calls `watcher` now and on every change; returns the function that stops it.
    watch(watcher) {
      watchers.push(watcher)
      watcher(state)
      return () => {
        watchers = watchers.filter(w => w !== watcher)
      }
    },
  }
}

module.exports = { createLaunch }
