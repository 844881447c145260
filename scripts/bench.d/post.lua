-- wrk script: POST the same body on every request.
--   wrk ... -s scripts/bench.d/post.lua URL -- BODY_FILE [CONTENT_TYPE]
-- BODY_FILE "-" sends an empty body (Content-Length: 0), as Graph's
-- validation handshake does.

wrk.method = "POST"

function init(args)
    local file = args[1] or "-"
    local body = ""
    if file ~= "-" then
        local f = assert(io.open(file, "rb"))
        body = f:read("*a")
        f:close()
    end
    wrk.body = body
    wrk.headers["Content-Type"] = args[2] or "application/json"
end
