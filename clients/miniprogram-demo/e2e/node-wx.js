// The part of wx the SDK uses (request, uploadFile, storage), done with Node's fetch, so the
// demo's pages can run with the real SDK against a real identityd outside WeChat.
const fs = require('node:fs')
const path = require('node:path')

function finish(options, ok, value) {
  const callback = ok ? options.success : options.fail
  if (callback) callback(value)
  if (options.complete) options.complete(value)
}

function headersOf(response) {
  const header = {}
  response.headers.forEach((value, name) => {
    header[name] = value
  })
  return header
}

function createNodeWx() {
  const storage = new Map()
  return {
    // As wx.request: a string body is sent as is, an object as JSON; a JSON answer is parsed.
    request(options) {
      const method = options.method || 'GET'
      const headers = Object.assign({}, options.header)
      let body
      if (options.data !== undefined && method !== 'GET') {
        body = typeof options.data === 'string' ? options.data : JSON.stringify(options.data)
        if (!Object.keys(headers).some(name => name.toLowerCase() === 'content-type')) {
          headers['content-type'] = 'application/json'
        }
      }
      fetch(options.url, { method, headers, body }).then(
        async response => {
          const text = await response.text()
          let data = text
          try {
            data = JSON.parse(text)
          } catch (_) {
            // not JSON: wx.request hands the text over
          }
          finish(options, true, { statusCode: response.status, data, header: headersOf(response) })
        },
        err => finish(options, false, { errMsg: `request:fail ${err.message}` })
      )
    },

    // As wx.uploadFile: multipart/form-data, the file under `name`; `data` stays a string.
    uploadFile(options) {
      const form = new FormData()
      for (const [name, value] of Object.entries(options.formData || {})) form.append(name, value)
      const type = path.extname(options.filePath) === '.png' ? 'image/png' : 'image/jpeg'
      form.append(options.name, new Blob([fs.readFileSync(options.filePath)], { type }), path.basename(options.filePath))
      fetch(options.url, { method: 'POST', headers: options.header, body: form }).then(
        async response => finish(options, true, { statusCode: response.status, data: await response.text(), header: headersOf(response) }),
        err => finish(options, false, { errMsg: `uploadFile:fail ${err.message}` })
      )
    },

    getStorageSync: key => (storage.has(key) ? storage.get(key) : ''),
    setStorageSync: (key, value) => storage.set(key, value),
    removeStorageSync: key => storage.delete(key),
    stopPullDownRefresh() {},
  }
}

module.exports = { createNodeWx }
