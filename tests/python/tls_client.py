"""pika over TLS, for tests/tls.rs: connect (TLS 1.2 or 1.3 forced, optional client
certificate, PLAIN guest/guest or SASL EXTERNAL), publish one message to a fresh queue and
get it back. Prints `OK <body>` or `ERR <exception>`; exits 0 either way (the test judges).

usage: tls_client.py PORT CA VERSION(1.2|1.3) [--cert FILE --key FILE] [--external]
"""

import ssl
import sys
import uuid

import pika


def main():
    port, ca, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    args = sys.argv[4:]
    context = ssl.create_default_context(cafile=ca)
    v = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
    context.minimum_version = v
    context.maximum_version = v
    if "--cert" in args:
        context.load_cert_chain(args[args.index("--cert") + 1], args[args.index("--key") + 1])
    if "--external" in args:
        credentials = pika.credentials.ExternalCredentials()
    else:
        credentials = pika.PlainCredentials("guest", "guest")
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=port,
        ssl_options=pika.SSLOptions(context, "localhost"),
        credentials=credentials,
        connection_attempts=1,
        socket_timeout=5,
        blocked_connection_timeout=5,
    )
    try:
        conn = pika.BlockingConnection(params)
        ch = conn.channel()
        queue = "tls-" + uuid.uuid4().hex
        ch.queue_declare(queue=queue, exclusive=True)
        body = "hello over TLS " + version
        ch.basic_publish(exchange="", routing_key=queue, body=body.encode())
        got = None
        for method, _props, data in ch.consume(queue, auto_ack=True, inactivity_timeout=5):
            got = data
            break
        ch.cancel()
        conn.close()
        print("OK", got.decode() if got is not None else "<nothing>")
    except Exception as e:  # the test reads the class and text
        print("ERR", type(e).__name__, repr(e))


main()
