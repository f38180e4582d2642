// A stand-in for the SDK's IdentityClient (identityd-miniprogram): records every call and
// answers what the test scripted, so page tests need neither the SDK built nor a server.

class IdentityError extends Error {
  constructor(code, status, detail) {
    super(detail || code)
    this.code = code
    this.status = status
    this.detail = detail
  }
}

const METHODS = ['login', 'me', 'updateProfile', 'bindPhone', 'sessions', 'endSession', 'logout']

class FakeIdentity {
  constructor() {
    this.calls = []
    this.answers = {}
    for (const method of METHODS) {
      this[method] = (...args) => {
        this.calls.push({ method, args })
        const queue = this.answers[method] || []
        if (!queue.length) return Promise.reject(new Error(`unscripted call: ${method}`))
        const next = queue.shift()
        return next instanceof Error ? Promise.reject(next) : Promise.resolve(next)
      }
    }
  }

  // The next call to `method` resolves with `value` (or rejects, when it is an Error).
  answer(method, value) {
    ;(this.answers[method] = this.answers[method] || []).push(value)
    return this
  }

  callsTo(method) {
    return this.calls.filter(call => call.method === method).map(call => call.args)
  }
}

function user(fields = {}) {
  return Object.assign(
    { user_id: '0190a1b2-0000-7000-8000-000000000001', openid: 'o-demo', unionid: null, is_new_user: false },
    fields
  )
}

module.exports = { FakeIdentity, IdentityError, user }
