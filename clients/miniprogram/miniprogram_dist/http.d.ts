import { WxLike } from './wx';
/** An HTTP answer with its body parsed: JSON, `undefined` when empty, `NOT_JSON` otherwise. */
export interface HttpAnswer {
    status: number;
    body: unknown;
    header?: Record<string, string>;
}
export declare const NOT_JSON: {
    notJson: boolean;
};
export interface HttpCall {
    url: string;
    method: 'GET' | 'POST' | 'PUT' | 'DELETE';
    header: Record<string, string>;
    /** Sent as JSON. */
    data?: unknown;
}
/** wx.request as a promise. A fail callback (no answer: offline, DNS, timeout) is `network_error`. */
export declare function request(wx: WxLike, call: HttpCall): Promise<HttpAnswer>;
export interface UploadCall {
    url: string;
    filePath: string;
    name: string;
    header: Record<string, string>;
}
/** wx.uploadFile as a promise; its `data` is always a string, parsed here. */
export declare function upload(wx: WxLike, call: UploadCall): Promise<HttpAnswer>;
