-- nd.vsock on the shared loop (unix sockets and loopback TCP; this machine has no vsock peer), against servers
-- written in the spec and against the real enclave/vsock-pingpong; the vsock-ping runbook through the CLI; and
-- nd.imagelint plus the image-lint runbook on the seed's failing image and the project's own Dockerfiles.
local nd = require "nd"
local vsock = require "nd.vsock"
local imagelint = require "nd.imagelint"
local proc = require "nd.proc"
local json = require "nd.json"

local PINGPONG = spec.binary_dir .. "/enclave/vsock-pingpong"
local FIX = spec.source_dir .. "/tests/fixtures/imagelint/"

-- unix socket paths are limited to 108 bytes: when $TMPDIR makes spec.tmpdir() too long, use a short directory of
-- our own under /tmp, removed after each case.
local short_dirs = {}
after_each(function()
  for _, d in ipairs(short_dirs) do require("nd.fs").rm_rf(d) end
  short_dirs = {}
end)
local function sockdir()
  local d = spec.tmpdir()
  if #d > 80 then
    d = assert(require("luv").fs_mkdtemp("/tmp/ndvs-XXXXXX"))
    short_dirs[#short_dirs + 1] = d
  end
  return d
end

local function nitrodiag(args)
  local argv = { spec.nitrodiag }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.env = { PATH = os.getenv("PATH"), HOME = os.getenv("HOME") or "/root", NITRODIAG_PATH = "" }
  argv.timeout = 60
  return assert(spec.run(argv))
end

-- Starts vsock-pingpong on a unix socket and waits until it answers.
local function start_pingpong(addr)
  local h = proc.start{ PINGPONG, "--mode", "vsock", "--listen", addr }
  local t0 = nd.now()
  repeat
    if vsock.ping(addr, { timeout = 5 }) then return h end
    nd.sleep(0.02)
  until nd.now() - t0 > 30
  h:close()
  error("vsock-pingpong did not start on " .. addr)
end

describe("nd.vsock addresses", function()
  it("parses the three forms", function()
    eq(vsock.parse("vsock:16:5000"), { kind = "vsock", cid = 16, port = 5000, text = "vsock:16:5000" })
    eq(vsock.parse("unix:/tmp/x"), { kind = "unix", path = "/tmp/x", text = "unix:/tmp/x" })
    eq(vsock.parse("tcp:127.0.0.1:80"), { kind = "tcp", port = 80, text = "tcp:127.0.0.1:80" })
    eq(vsock.PINGPONG_PORT, 5000)
  end)
  it("rejects bad syntax with one line and EINVAL", function()
    local r, err, code = vsock.parse("16:5000")
    eq(r, nil)
    eq(err, 'bad address "16:5000": expected vsock:CID:PORT, unix:PATH or tcp:HOST:PORT')
    eq(code, "EINVAL")
    r, err, code = vsock.connect("vsock:sixteen:5000")
    eq({ r, code }, { nil, "EINVAL" })
    match(err, 'CID "sixteen" is not a number')
    r, err, code = vsock.ping("tcp:example.com:80")
    eq({ r, code }, { nil, "EINVAL" })
  end)
end)

describe("nd.vsock over unix sockets", function()
  it("serves and pings with a listener written in Lua", function()
    local addr = "unix:" .. sockdir() .. "/s"
    local l <close> = assert(vsock.listen(addr))
    eq(l:address(), addr)
    local server = nd.spawn(function()
      for _ = 1, 2 do
        local c <close> = assert(l:accept({ timeout = 30 }))
        local msg = assert(c:read(16, { timeout = 30 }))
        assert(c:write(msg == "ping" and "pong" or "unknown"))
      end
    end)
    local r = assert(vsock.ping(addr, { timeout = 30 }))
    eq(r.reply, "pong")
    eq(r.address, addr)
    truthy(type(r.rtt_ms) == "number" and r.rtt_ms >= 0 and r.rtt_ms < 30000)
    local c <close> = assert(vsock.connect(addr, { timeout = 30 }))
    assert(c:write("hello"))
    eq(c:read(16), "unknown")
    local d, err, code = c:read(16, { timeout = 30 })
    eq({ d, code }, { nil, "EOF" })
    match(err, "closed")
    eq(server:join(), true)
  end)

  it("explains nothing listening", function()
    local r, err, code = vsock.connect("unix:" .. sockdir() .. "/nobody")
    eq({ r, code }, { nil, "ENOENT" })
    match(err, "nothing listens at unix:")
    r, err, code = vsock.ping("unix:" .. sockdir() .. "/nobody")
    eq({ r, code }, { nil, "ENOENT" })
  end)

  it("times out reads, accepts and silent servers", function()
    local addr = "unix:" .. sockdir() .. "/silent"
    local l <close> = assert(vsock.listen(addr))
    local t0 = nd.now()
    local c, err, code = l:accept({ timeout = 0.2 })
    eq({ c, code }, { nil, "ETIMEDOUT" })
    truthy(nd.now() - t0 >= 0.15 and nd.now() - t0 < 20, "the 0.2 s timeout ended it (accept has none by default)")
    local held = {}
    local server = nd.spawn(function()
      held[1] = assert(l:accept({ timeout = 30 }))
      held[2] = assert(l:accept({ timeout = 30 }))
    end)
    local conn <close> = assert(vsock.connect(addr))
    t0 = nd.now()
    local d
    d, err, code = conn:read(4, { timeout = 0.2 })
    eq({ d, code }, { nil, "ETIMEDOUT" })
    truthy(nd.now() - t0 < 20, "the 0.2 s timeout ended it, not read's default 30 s")
    local r
    r, err, code = vsock.ping(addr, { timeout = 0.3 })
    eq({ r, code }, { nil, "ETIMEDOUT" })
    match(err, "connected, but no reply within 300 ms")
    server:join()
    for _, h in ipairs(held) do h:close() end
  end)

  it("cancels a waiting read when its task is cancelled, and wakes a reader when the socket closes", function()
    local addr = "unix:" .. sockdir() .. "/cancel"
    local l <close> = assert(vsock.listen(addr))
    local c1 <close> = assert(vsock.connect(addr))
    local s1 <close> = assert(l:accept({ timeout = 30 }))
    local t = nd.spawn(function() return c1:read(4, { timeout = 30 }) end)
    nd.sleep(0.05)
    eq(t:cancel("stop"), true)
    -- the socket is usable again after the cancelled wait
    assert(s1:write("abcd"))
    eq(c1:read(4, { timeout = 30 }), "abcd")
    -- a reader whose socket is closed by another task gets ECANCELED
    local t2 = nd.spawn(function() return c1:read(4, { timeout = 30 }) end)
    nd.sleep(0.05)
    c1:close()
    local ok, d, err, code = t2:join()
    eq({ ok, d, code }, { true, nil, "ECANCELED" })
    match(err, "closed while waiting")
    raises(function() c1:read(1) end, "closed")
  end)

  it("serves many clients at once against the real vsock-pingpong", function()
    local addr = "unix:" .. sockdir() .. "/pp"
    local h <close> = start_pingpong(addr)
    local tasks = {}
    for i = 1, 20 do tasks[i] = nd.spawn(function() return vsock.ping(addr, { timeout = 30 }) end) end
    for _, res in ipairs(nd.join_all(tasks)) do
      eq(res[1], true)
      eq(res[2].reply, "pong")
    end
  end)
end)

describe("nd.vsock over loopback TCP", function()
  it("listens on a kernel-chosen port and reports it", function()
    local l <close> = assert(vsock.listen("tcp:127.0.0.1:0"))
    local addr = l:address()
    match(addr, "^tcp:127%.0%.0%.1:%d+$")
    truthy(not addr:match(":0$"))
    local server = nd.spawn(function()
      local c <close> = assert(l:accept({ timeout = 30 }))
      assert(c:read(16))
      assert(c:write("pong"))
    end)
    eq(assert(vsock.ping(addr, { timeout = 30 })).reply, "pong")
    server:join()
  end)
end)

describe("nitrodiag vsock-ping", function()
  it("reports pong and the round-trip time", function()
    local addr = "unix:" .. sockdir() .. "/rb"
    local h <close> = start_pingpong(addr)
    local r = nitrodiag({ "--json", "vsock-ping", addr, "count=3" })
    eq(r.exit_code, 0, r.stderr)
    local res = assert(json.decode(r.stdout))
    eq(res.verdict, "pass")
    match(res.steps[1].message, "answered pong 3 times, round trip min [%d.]+ / median [%d.]+ / max [%d.]+ ms")
    eq(res.findings[1].code, "VSOCK_PONG")
  end)
  it("says nothing listens, and rejects bad addresses in one line", function()
    local r = nitrodiag({ "--json", "vsock-ping", "unix:" .. sockdir() .. "/none" })
    eq(r.exit_code, 1)
    local res = assert(json.decode(r.stdout))
    eq(res.findings[1].code, "VSOCK_PING_FAILED")
    match(res.findings[1].message, "nothing listens at unix:")
    r = nitrodiag({ "--json", "vsock-ping", "vsock:x:1" })
    eq(r.exit_code, 1)
    res = assert(json.decode(r.stdout))
    eq(res.findings[1].code, "VSOCK_BAD_ADDRESS")
    eq(res.findings[1].message, 'bad address "vsock:x:1": CID "x" is not a number (vsock:CID:PORT)')
    r = nitrodiag({ "vsock-ping" })
    eq(r.exit_code, 2)
    match(r.stderr, "missing argument target")
  end)
  it("builds vsock:CID:PORT from CID and PORT", function()
    -- Whatever this machine's vsock offers, CID 4242 has no listener: the message names the address.
    local r = nitrodiag({ "--json", "vsock-ping", "4242", "5001", "timeout=1" })
    eq(r.exit_code, 1)
    local res = assert(json.decode(r.stdout))
    match(res.findings[1].message, "vsock:4242:5001")
  end)
end)

describe("nd.imagelint", function()
  it("fails the seed's image and says why", function()
    local r = assert(imagelint.file(FIX .. "seed.Dockerfile"))
    eq(r.ok, false)
    eq(r.fails, 2)
    eq(r.command, { "/bin/sh", "-c", "/vsock-pingpong --mode ${MODE}" })
    eq(r.entrypoint, { "/init", form = "exec", line = 12 })
    eq(r.findings[1].code, "IMG_SHELL_C")
    eq(r.findings[1].line, 13)
    match(r.findings[1].rule, "reboot: Restarting system")
    eq(r.findings[2].code, "IMG_CMD_REPLACES_ENTRYPOINT")
    r = assert(imagelint.file(FIX .. "docker_inspect_seed.json"))
    eq(r.source, "inspect")
    eq(r.ok, false)
  end)
  it("passes the project's Dockerfile", function()
    local r = assert(imagelint.file(spec.source_dir .. "/enclave/Dockerfile"))
    eq(r.ok, true)
    eq(r.command, { "/init" })
    eq(r.env, { VSOCK_PINGPONG_MODE = "vsock" })
    eq(r.cmd, nil)
    eq(r.base, "scratch")
  end)
  it("lints text and inspect JSON, and fails cleanly", function()
    local r = assert(imagelint.dockerfile("FROM scratch\nCMD /app\n"))
    eq(r.cmd.form, "shell")
    eq(r.findings[1].code, "IMG_SHELL_C")
    r = assert(imagelint.inspect('{"Config":{"Entrypoint":["/init"],"Cmd":null}}'))
    eq(r.ok, true)
    local x, err, code = imagelint.dockerfile("RUN x")
    eq({ x, code }, { nil, "EBADMSG" })
    eq(err, "not a Dockerfile: no FROM instruction found")
    x, err, code = imagelint.file("/nonexistent")
    eq({ x, code }, { nil, "ENOENT" })
  end)
end)

describe("nitrodiag image-lint", function()
  it("fails the seed with the Nitro rule, passes enclave/Dockerfile", function()
    local r = nitrodiag({ "image-lint", FIX .. "seed.Dockerfile" })
    eq(r.exit_code, 1)
    match(r.stdout, "IMG_SHELL_C: CMD on line 13 runs a shell")
    match(r.stdout, "CMD replaces the ENTRYPOINT")
    r = nitrodiag({ "--json", "image-lint", spec.source_dir .. "/enclave/Dockerfile" })
    eq(r.exit_code, 0, r.stdout .. r.stderr)
    local res = assert(json.decode(r.stdout))
    eq(res.verdict, "pass")
    match(res.steps[1].message, "Nitro runs %[/init%]")
    r = nitrodiag({ "image-lint", spec.source_dir .. "/enclave/Dockerfile.smoke" })
    eq(r.exit_code, 0)
    r = nitrodiag({ "image-lint", "/nonexistent/Dockerfile" })
    eq(r.exit_code, 1)
    match(r.stdout, "/nonexistent/Dockerfile: No such file or directory")
  end)
end)
