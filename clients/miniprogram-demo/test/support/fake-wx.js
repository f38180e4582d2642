// A stand-in for the global wx with only wx.request, answering from a script of
// { statusCode, data } (success) or { errMsg } (fail), and recording the requests.
function fakeWx(answers = []) {
  const wx = {
    requests: [],
    request(options) {
      wx.requests.push(options)
      const answer = answers.shift()
      Promise.resolve().then(() => {
        if (!answer) options.fail({ errMsg: 'request:fail unscripted' })
        else if (answer.errMsg) options.fail(answer)
        else options.success(answer)
      })
    },
    getStorageSync() {
      return ''
    },
  }
  return wx
}

module.exports = { fakeWx }
