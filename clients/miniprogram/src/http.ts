import { IdentityError } from './errors'
import { WxLike } from './wx'

/** An HTTP answer with its body parsed: JSON, `undefined` when empty, `NOT_JSON` otherwise. */
export interface HttpAnswer {
  status: number
  body: unknown
  header?: Record<string, string>
}

export const NOT_JSON = { notJson: true }

export interface HttpCall {
  url: string
  method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  header: Record<string, string>
  /** Sent as JSON. */
  data?: unknown
}

/** wx.request as a promise. A fail callback (no answer: offline, DNS, timeout) is `network_error`. */
export function request (wx: WxLike, call: HttpCall): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const header = Object.assign({}, call.header)
    let data: string | undefined
    if (call.data !== undefined) {
      header['content-type'] = 'application/json'
      data = JSON.stringify(call.data)
    }
    wx.request({
      url: call.url,
      method: call.method,
      header,
      data,
      // Not 'json': we parse ourselves, the same way for every answer and base library.
      dataType: 'text',
      responseType: 'text',
      success: (res) => resolve({ status: res.statusCode, body: parseBody(res.data), header: res.header }),
      fail: (err) => reject(networkError(err))
    })
  })
}

export interface UploadCall {
  url: string
  filePath: string
  name: string
  header: Record<string, string>
}

/** wx.uploadFile as a promise; its `data` is always a string, parsed here. */
export function upload (wx: WxLike, call: UploadCall): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    wx.uploadFile({
      url: call.url,
      filePath: call.filePath,
      name: call.name,
      header: call.header,
      success: (res) => resolve({ status: res.statusCode, body: parseBody(res.data), header: res.header }),
      fail: (err) => reject(networkError(err))
    })
  })
}

function parseBody (data: unknown): unknown {
  if (typeof data !== 'string') return data == null ? undefined : data
  if (data.trim() === '') return undefined
  try {
    return JSON.parse(data)
  } catch (_) {
    return NOT_JSON
  }
}

function networkError (err: { errMsg?: string } | undefined): IdentityError {
  return new IdentityError('network_error', 0, (err && err.errMsg) || 'the request failed')
}
