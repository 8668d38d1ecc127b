"""The HTTP submission API: `POST /api/v1/logs` files a log through the shared pipeline.

`server` starts waitress and records the server's run, `app` is the WSGI application,
`upload` streams a body into the pipeline (size limits, file names, the item key),
`auth` reads the bearer-token file and `multipart` parses form uploads as they stream.
"""
