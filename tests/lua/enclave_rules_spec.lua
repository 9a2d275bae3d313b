-- The enclave's side of the knowledge base (lua/nd/rules/enclave.lua): the field cases it was built from (real
-- outputs: public threads, and nitrodiag-init's runs under the real kernel of tests/vm, kept as text so the rules are
-- tested without qemu), then each rule's edges: what must NOT be read as a cause.
local diagnose = require "nd.diagnose"
local fs = require "nd.fs"
local json = require "nd.json"

local FIELD = {
  "vm-init-app-missing", "vm-init-script-no-interpreter", "vm-init-app-exit1", "vm-init-app-segv", "vm-init-lo-down",
  "enclaver-200-imds", "hashi-795-no-ca-store",
}

local function causes(text)
  local res = diagnose.run(text)
  eq(#res.errors, 0, table.concat(res.errors, "\n"))
  local codes = {}
  for _, c in ipairs(res.causes) do codes[#codes + 1] = c.code end
  return res, codes
end

local function has(codes, code)
  for _, c in ipairs(codes) do if c == code then return true end end
  return false
end

describe("enclave field cases", function()
  for _, id in ipairs(FIELD) do
    it(id .. " gives its cause first", function()
      local dir = spec.source_dir .. (id:find("^vm%-") and "/tests/vm/field/" or "/tests/field/") .. id
      local case = json.decode(assert(fs.read(dir .. "/case.json")))
      local res, codes = causes(assert(fs.read(dir .. "/output.txt")))
      truthy(res.top, id .. ": no cause at all")
      eq(res.top.code, case.expect.finding, id .. ": causes " .. table.concat(codes, ", "))
    end)
  end
end)

describe("enclave rules", function()
  it("read the log channel's lines as nitrodiag-logd writes them", function()
    local text = table.concat({
      "2026-12-06T11:42:13.031Z enclave=i-0abc-enc01 cid=16 seq=7 init: [init] check loopback warn: lo is down: connecting to 127.0.0.1 fails",
      "2026-12-06T11:42:13.083Z enclave=i-0abc-enc01 cid=16 seq=16 stderr: Traceback (most recent call last):",
      "2026-12-06T11:42:13.083Z enclave=i-0abc-enc01 cid=16 seq=17 stderr:   File \"/app/server.py\", line 3, in <module>",
      "2026-12-06T11:42:13.084Z enclave=i-0abc-enc01 cid=16 seq=18 stderr: ConnectionRefusedError: [Errno 111] Connection refused",
      "2026-12-06T11:42:13.090Z enclave=i-0abc-enc01 cid=16 seq=19 init: [init] /usr/bin/python3 exited rc=1 after 0.31 s",
    }, "\n")
    local res, codes = causes(text)
    eq(res.top.code, "ENCLAVE_APP_PANIC_AT_START", table.concat(codes, ", "))
    match(res.top.message, "ConnectionRefusedError")
    truthy(has(codes, "ENCLAVE_APP_EXITED"))
  end)

  it("an operator's SIGTERM is not a crash; a SIGKILL nobody sent is", function()
    local _, codes = causes("[init] starting\n[init] forwarding SIGTERM to /app (pid 7)\n[init] /app exited signal=15 (SIGTERM) after 9.00 s\n")
    falsy(has(codes, "ENCLAVE_APP_KILLED_BY_SIGNAL"))
    local res = causes("[init] starting\nworker: allocating buffers\n[init] /app exited signal=9 (SIGKILL) after 2.10 s\n")
    eq(res.top.code, "ENCLAVE_APP_KILLED_BY_SIGNAL")
    match(res.top.message, "SIGKILL")
    match(res.top.message, "allocating buffers")
  end)

  it("init's own check lines are not causes by themselves", function()
    local vm = assert(fs.read(spec.source_dir .. "/tests/vm/field/vm-init-lo-down/output.txt"))
    -- the healthy part of a console: every check line, no application failure
    local healthy = {}
    for l in vm:gmatch("[^\n]+") do
      if l:find("^%[init%] check") or l:find("^%[init%] starting") then healthy[#healthy + 1] = l end
    end
    local _, codes = causes(table.concat(healthy, "\n"))
    falsy(has(codes, "KMS_TLS_TRUST_STORE"), table.concat(codes, ", "))
    falsy(has(codes, "KMSTOOL_NOT_IN_ENCLAVE"), table.concat(codes, ", "))
    falsy(has(codes, "ENCLAVE_LOOPBACK_DOWN"), table.concat(codes, ", "))
  end)

  it("loopback: 127.0.0.1 unreachable is lo; a remote host unreachable is the missing network", function()
    local res = causes("Error: connect ENETUNREACH 127.0.0.1:8000\n")
    eq(res.top.code, "ENCLAVE_LOOPBACK_DOWN")
    res = causes("botocore.exceptions.EndpointConnectionError: Could not connect to the endpoint URL: \"https://kms.us-east-1.amazonaws.com/\"\n" ..
      "socket.gaierror: [Errno -3] Temporary failure in name resolution\n")
    eq(res.top.code, "ENCLAVE_NO_DIRECT_NETWORK")
    res = causes("Get \"http://169.254.169.254/latest/api/token\": dial tcp 169.254.169.254:80: connect: network is unreachable\n")
    eq(res.top.code, "ENCLAVE_NO_DIRECT_NETWORK")
    match(res.top.message, "IMDS")
  end)

  it("TLS: an unknown issuer is the CA bundle, a name mismatch is the proxy's host", function()
    local res = causes("[init] check ca-bundle warn: no CA bundle at /etc/ssl/certs/ca-certificates.crt\n" ..
      "Get \"https://kms.eu-west-1.amazonaws.com/\": tls: failed to verify certificate: x509: certificate signed by unknown authority\n")
    eq(res.top.code, "ENCLAVE_TLS_NO_CA_BUNDLE")
    match(res.top.message, "no CA bundle")
    res = causes("Post \"https://kms.eu-west-1.amazonaws.com/\": tls: failed to verify certificate: x509: certificate is valid for secretsmanager.eu-west-1.amazonaws.com, not kms.eu-west-1.amazonaws.com\n")
    eq(res.top.code, "ENCLAVE_TLS_WRONG_PROXY_HOST")
  end)

  it("a vsock server is not a TCP server", function()
    local _, codes = causes("[enclave] vsock mode: listening on vsock:any:5000\n")
    falsy(has(codes, "ENCLAVE_TCP_SERVER_NOT_VSOCK"))
    local res = causes(" * Running on http://127.0.0.1:5000\n")
    eq(res.top.code, "ENCLAVE_TCP_SERVER_NOT_VSOCK")
  end)

  it("lost log lines are reported, as a consequence", function()
    local res = causes("2026-12-06T11:00:00.000Z enclave=cid-16 cid=16 logd: 1200 line(s) lost in the enclave (records 5..1204: its queue was full or the connection broke)\n")
    local all = {}
    for _, c in ipairs(res.causes) do all[#all + 1] = c.code end
    for _, c in ipairs(res.consequences) do all[#all + 1] = c.code end
    truthy(has(all, "ENCLAVE_LOG_LINES_DROPPED"), table.concat(all, ", "))
  end)
end)

-- Real outputs, copied from public threads, in the formats the rules read. The threads are not about enclaves (their
-- causes were elsewhere): they prove the patterns match what runtimes really print, not what we imagine.
describe("enclave rules on real runtime output", function()
  it("a Go panic (coreos/fleet#119)", function()
    local res = causes("panic: dial tcp 10.10.10.10:22: operation timed out\n\ngoroutine 1 [running]:\n" ..
      "runtime.panic(0x2eab60, 0xc21000a780)\n")
    eq(res.top.code, "ENCLAVE_APP_PANIC_AT_START")
  end)
  it("a Rust panic (enarx/enarx#524)", function()
    local res = causes("thread 'main' panicked at 'unable to open /dev/sev: Os { code: 2, kind: NotFound, message: " ..
      "\"No such file or directory\" }', src/main.rs:41:5\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n")
    eq(res.top.code, "ENCLAVE_APP_PANIC_AT_START")
    match(res.top.message, "unable to open /dev/sev")
  end)
  it("a Python traceback ending in a name resolution failure (OverTheWireOrg/OverTheWire-website#70)", function()
    local res = causes(table.concat({
      "Traceback (most recent call last):",
      "  File \"/usr/local/bin/wechall\", line 30, in <module>",
      "    ssl_sock.connect((host, port))",
      "  File \"/usr/lib/python3.5/ssl.py\", line 1019, in connect",
      "    self._real_connect(addr, False)",
      "  File \"/usr/lib/python3.5/ssl.py\", line 1006, in _real_connect",
      "    socket.connect(self, addr)",
      "socket.gaierror: [Errno -3] Temporary failure in name resolution" }, "\n"))
    eq(res.top.code, "ENCLAVE_NO_DIRECT_NETWORK")
  end)
  it("a Python traceback ending in EADDRNOTAVAIL, with no loopback in sight (zhangwenxiao/GPU-Manager#1)", function()
    local res, codes = causes(table.concat({
      "Traceback (most recent call last):",
      "  File \"/usr/lib/python3.5/socketserver.py\", line 454, in server_bind",
      "    self.socket.bind(self.server_address)",
      "OSError: [Errno 99] Cannot assign requested address" }, "\n"))
    falsy(has(codes, "ENCLAVE_LOOPBACK_DOWN"), "not lo without 127.0.0.1 or init's lo line")
    eq(res.top.code, "ENCLAVE_APP_PANIC_AT_START")
    match(res.top.message, "OSError: %[Errno 99%]")
  end)
end)

-- Without nitrodiag-init, the AWS bootstrap init's own lines (aws-nitro-enclaves-sdk-bootstrap, init/init.c: warn2()
-- then perror() for a failed execvpe; "child exited with error" / "child exited by signal" before reboot()).
describe("enclave rules on the AWS bootstrap init's lines", function()
  it("execvpe failures", function()
    local res = causes("execvpe: /app/server: No such file or directory\n[    1.234567] reboot: Restarting system\n")
    eq(res.top.code, "ENCLAVE_CMD_NOT_FOUND")
    match(res.top.message, "#! interpreter")
    res = causes("execvpe: /app/server: Permission denied\n")
    eq(res.top.code, "ENCLAVE_APP_CANNOT_EXEC")
  end)
  it("the child's end", function()
    local res = causes("worker: loading model\nchild exited by signal\n[    2.000000] reboot: Restarting system\n")
    eq(res.top.code, "ENCLAVE_APP_KILLED_BY_SIGNAL")
    match(res.top.message, "loading model")
    res = causes("config: missing KMS_KEY_ID\nchild exited with error\n[    2.000000] reboot: Restarting system\n")
    local _, codes = causes("config: missing KMS_KEY_ID\nchild exited with error\n[    2.000000] reboot: Restarting system\n")
    truthy(has(codes, "ENCLAVE_APP_EXITED"), table.concat(codes, ", "))
  end)
end)

