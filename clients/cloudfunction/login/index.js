// identityd cloud-function login: deploy this as a WeChat cloud function (e.g. named `login`).
//
// WeChat has already authenticated the caller of a cloud function: `getWXContext()` gives the
// OPENID, APPID and (for apps bound to an Open Platform account) UNIONID. This function
// forwards them to identityd in a signed request and returns identityd's answer (access
// token, refresh token, user) to the mini-program, exactly like `POST /v1/wechat/login`.
//
// Configure the function's environment variables:
//   IDENTITY_URL           https://id.example.com   (identityd's public base URL)
//   IDENTITY_CLOUD_SECRET  the app's secret from identityd's IDENTITY_CLOUD_LOGIN_SECRETS
//
// In the mini-program:
//   const { result } = await wx.cloud.callFunction({ name: 'login' })
//   // result.access_token, result.refresh_token, result.user

'use strict'

const cloud = require('wx-server-sdk')
const crypto = require('crypto')
const http = require('http')
const https = require('https')

cloud.init({ env: cloud.DYNAMIC_CURRENT_ENV })

// The signature identityd checks: hex HMAC-SHA256 of "{timestamp}\n{nonce}\n{body}".
function sign (secret, timestamp, nonce, body) {
  return crypto
    .createHmac('sha256', secret)
    .update(`${timestamp}\n${nonce}\n${body}`)
    .digest('hex')
}

function post (url, body, headers) {
  const target = new URL(url)
  const client = target.protocol === 'http:' ? http : https
  return new Promise((resolve, reject) => {
    const request = client.request(
      target,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers },
        timeout: 5000
      },
      (response) => {
        let text = ''
        response.setEncoding('utf8')
        response.on('data', (chunk) => { text += chunk })
        response.on('end', () => {
          try {
            resolve({ status: response.statusCode, body: JSON.parse(text) })
          } catch (err) {
            reject(new Error(`identityd answered ${response.statusCode} with a non-JSON body`))
          }
        })
      }
    )
    request.on('timeout', () => request.destroy(new Error('identityd did not answer in time')))
    request.on('error', reject)
    request.end(body)
  })
}

exports.main = async () => {
  const base = process.env.IDENTITY_URL
  const secret = process.env.IDENTITY_CLOUD_SECRET
  if (!base || !secret) {
    throw new Error('set IDENTITY_URL and IDENTITY_CLOUD_SECRET in the function configuration')
  }
  const { OPENID, APPID, UNIONID } = cloud.getWXContext()
  const body = JSON.stringify({ appid: APPID, openid: OPENID, unionid: UNIONID || null })
  const timestamp = Math.floor(Date.now() / 1000).toString()
  const nonce = crypto.randomBytes(16).toString('hex')
  const answer = await post(`${base.replace(/\/+$/, '')}/v1/wechat/cloud-login`, body, {
    'x-identity-timestamp': timestamp,
    'x-identity-nonce': nonce,
    'x-identity-signature': sign(secret, timestamp, nonce, body)
  })
  if (answer.status !== 200) {
    // A problem+json answer: pass its code and detail on, never the secret.
    const err = new Error(answer.body.detail || `identityd answered ${answer.status}`)
    err.code = answer.body.code
    err.status = answer.status
    throw err
  }
  return answer.body
}
