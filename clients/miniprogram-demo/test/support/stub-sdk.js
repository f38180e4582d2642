// app.js requires 'identityd-miniprogram', which resolves to ../miniprogram (a `file:` link)
// and exists only once that SDK is built. These tests replace it with a recorder, so they run
// whether it is built or not, and check how app.js uses it.
const Module = require('node:module')
const path = require('node:path')

const STUB = path.join(__dirname, 'stub-sdk-module.js')
const resolve = Module._resolveFilename
Module._resolveFilename = function (request, ...rest) {
  return request === 'identityd-miniprogram' ? STUB : resolve.call(this, request, ...rest)
}

module.exports = require(STUB)
