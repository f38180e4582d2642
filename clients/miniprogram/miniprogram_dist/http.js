"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.NOT_JSON = void 0;
exports.request = request;
exports.upload = upload;
const errors_1 = require("./errors");
exports.NOT_JSON = { notJson: true };
/** wx.request as a promise. A fail callback (no answer: offline, DNS, timeout) is `network_error`. */
function request(wx, call) {
    return new Promise((resolve, reject) => {
        const header = Object.assign({}, call.header);
        let data;
        if (call.data !== undefined) {
            header['content-type'] = 'application/json';
            data = JSON.stringify(call.data);
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
        });
    });
}
/** wx.uploadFile as a promise; its `data` is always a string, parsed here. */
function upload(wx, call) {
    return new Promise((resolve, reject) => {
        wx.uploadFile({
            url: call.url,
            filePath: call.filePath,
            name: call.name,
            header: call.header,
            success: (res) => resolve({ status: res.statusCode, body: parseBody(res.data), header: res.header }),
            fail: (err) => reject(networkError(err))
        });
    });
}
function parseBody(data) {
    if (typeof data !== 'string')
        return data == null ? undefined : data;
    if (data.trim() === '')
        return undefined;
    try {
        return JSON.parse(data);
    }
    catch (_) {
        return exports.NOT_JSON;
    }
}
function networkError(err) {
    return new errors_1.IdentityError('network_error', 0, (err && err.errMsg) || 'the request failed');
}
