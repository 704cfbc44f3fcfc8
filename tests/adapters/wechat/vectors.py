"""The platforms' published WeChat samples, copied here so the tests need nothing outside the
repository: the Mini Program message-push documentation's example (GET URL verification, a
plaintext JSON push, a safe-mode push and an encrypted reply, deterministic given its random
bytes, timestamp and nonce) and Tencent's Official Account WXBizMsgCrypt sample (XML, 兼容模式).
"""

# -- Mini Program message push (token AAAAA, EncodingAESKey 43 x 'A') ---------------------

MP_TOKEN = 'AAAAA'
MP_AES_KEY = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
MP_APPID = 'wxba5fad812f8e6fb9'

MP_GET = {
    "signature": "f464b24fc39322e44b38aa78f5edd27bd1441696",
    "timestamp": "1714036504",
    "nonce": "1514711492",
    "echostr": "4375120948345356249"
}
MP_PLAIN_POST = {
    "signature": "899cf89e464efb63f54ddac96b0a0a235f53aa78",
    "timestamp": "1714037059",
    "nonce": "486452656"
}
MP_PLAIN_BODY = '{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","CreateTime":1714037059,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}'
MP_SAFE_POST = {
    "signature": "6c5c811b55cc85e0e1b54100749188c20beb3f5d",
    "timestamp": "1714112445",
    "nonce": "415670741",
    "openid": "o9AgO5Kd5ggOC-bXrbNODIiE3bGY",
    "encrypt_type": "aes",
    "msg_signature": "046e02f8204d34f8ba5fa3b1db94908f3df2e9b3"
}
MP_SAFE_ENCRYPT = '+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04='
MP_SAFE_PLAINTEXT = '{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","CreateTime":1714112445,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}'
MP_SAFE_RANDOM16 = 'a8eedb185eb2fecf'
MP_REPLY = {
    "random16": "707722b803182950",
    "msg": "{\"demo_resp\":\"good luck\"}",
    "TimeStamp": "1713424427",
    "Nonce": "415670741",
    "Encrypt": "ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ==",
    "MsgSignature": "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1"
}

# -- Official Account WXBizMsgCrypt sample (XML, 兼容模式) ---------------------------------

OA_TOKEN = 'spamtest'
OA_AES_KEY = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG'
OA_APPID = 'wx2c2769f8efd9abc2'
OA_TIMESTAMP = '1409735669'
OA_NONCE = '1320562132'
OA_MSG_SIGNATURE = '5d197aaffba7e9b25a30732f161a50dee96bd5fa'
OA_SIGNATURE = '16120ec1b8dbb870f510d87ce6bc2463eae6ca1a'
OA_ENCRYPT = 'hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE='
OA_BODY_TEMPLATE = '<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[abcdteT]]></Content><MsgId>6054768590064713728</MsgId><Encrypt><![CDATA[%ENCRYPT%]]></Encrypt></xml>'
OA_PLAINTEXT = '<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n<CreateTime>1409735668</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[abcdteT]]></Content>\n<MsgId>6054768590064713728</MsgId>\n</xml>'
