// The module app.js gets for 'identityd-miniprogram' in tests (see stub-sdk.js): an
// IdentityClient whose instances are FakeIdentity objects, remembered with their options.
const { FakeIdentity, IdentityError } = require('./fake-identity')

const clients = []

class IdentityClient extends FakeIdentity {
  constructor(options) {
    super()
    this.options = options
    clients.push(this)
  }
}

module.exports = { IdentityClient, IdentityError, clients }
