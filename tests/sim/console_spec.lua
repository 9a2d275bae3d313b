-- The console: what good images print (enclave/init + vsock-pingpong, the hello control image, the busybox smoke
-- image), streaming until the enclave stops, is terminated from another process, the disconnect timeout passes, or
-- the caller sends SIGTERM (as `timeout 20 nitro-cli run-enclave … --attach-console` does in diag10).
local H = dofile(spec.source_dir .. "/tests/sim/helpers.lua")
local nd = require "nd"
local proc = require "nd.proc"
local cjson = require "cjson"

after_each(H.close_all)

local function eif(s, name) return s:path("/home/ec2-user/" .. name) end

local function start_attached(s, file)
  local lines = {}
  local h = assert(proc.start{ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "1024", "--debug-mode",
    "--attach-console", "--eif-path", eif(s, file),
    on_line = function(stream, line) if stream == "stdout" then lines[#lines + 1] = line end end })
  return h, lines
end

-- waits up to secs real seconds (the stand-in is another process: it needs real time, whatever the host's clock)
local function wait_for(lines, text, secs)
  local t0 = require("luv").hrtime()
  while (require("luv").hrtime() - t0) / 1e9 < (secs or 20) do
    for _, l in ipairs(lines) do if l:find(text, 1, true) then return true end end
    nd.sleep(0.05, { real = true })
  end
  return false
end

describe("attach-console", function()
  it("streams the vsock test image's init and app lines and ends on SIGTERM", function()
    local s = H.activate("healthy")
    local h <close>, lines = start_attached(s, "hello-vsock.eif")
    truthy(wait_for(lines, "[enclave] vsock mode: listening on vsock:any:5000"), table.concat(lines, "\n"))
    local text = table.concat(lines, "\n")
    match(text, "Connecting to the console for enclave 16%.%.%.\nSuccessfully connected to the console%.\n")
    match(text, "Command line: reboot=k panic=30 pci=off nomodules console=ttyS0")
    match(text, "\n%[init%] starting\n%[init%] launching /vsock%-pingpong %-%-mode vsock\n%[enclave%] mode=vsock\n")
    falsy(text:find("reboot: Restarting system", 1, true))
    truthy(h:running(), "still attached while the enclave runs")
    h:signal("TERM")
    local r = h:wait()
    eq(r.signal, 15)
    -- the enclave keeps running after the console client is gone
    local list = cjson.decode(H.run({ "nitro-cli", "describe-enclaves" }).stdout)
    eq(#list, 1)
  end)
  it("ends with status 0 when the enclave is terminated from another process", function()
    local s = H.activate("healthy")
    local h <close>, lines = start_attached(s, "hello-basic.eif")
    truthy(wait_for(lines, "[enclave] basic mode: alive; sleeping forever"))
    local id = cjson.decode(H.run({ "nitro-cli", "describe-enclaves" }).stdout)[1].EnclaveID
    eq(H.run({ "nitro-cli", "terminate-enclave", "--enclave-id", id }).exit_code, 0)
    local r = h:wait()
    eq(r.exit_code, 0)
  end)
  it("the busybox smoke image says it is alive; the hello control image greets periodically", function()
    local s = H.activate("healthy")
    local h <close>, lines = start_attached(s, "busybox-smoke.eif")
    truthy(wait_for(lines, "[busybox-smoke] alive"))
    h:signal("TERM")
    h:wait()
    H.run({ "nitro-cli", "terminate-enclave", "--all" })
    local h2 <close>, lines2 = start_attached(s, "hello.eif")
    truthy(wait_for(lines2, "[   1] Hello from the enclave side!"))
    h2:signal("TERM")
    h2:wait()
  end)
end)

describe("console", function()
  it("replays the console from the start and honours --disconnect-timeout", function()
    local s = H.activate("healthy")
    local r = H.run({ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "1024", "--debug-mode", "--eif-path",
      eif(s, "hello-basic.eif") })
    local id = cjson.decode(r.stdout).EnclaveID
    nd.sleep(0.3)
    local t0 = nd.now()
    r = H.run({ "nitro-cli", "console", "--enclave-id", id, "--disconnect-timeout", "1" })
    local took = nd.now() - t0
    eq(r.exit_code, 0)
    -- one second of the host's clock (the simulator advances it: no real second passes)
    truthy(took >= 0.9 and took < 15, "took " .. took)
    match(r.stdout, "^Connecting to the console for enclave 16%.%.%.\nSuccessfully connected to the console%.\n%[    0%.000000%] Linux version")
    match(r.stdout, "%[init%] launching /vsock%-pingpong %-%-mode basic\n%[enclave%] mode=basic\n%[enclave%] basic mode: alive; sleeping forever\n$")
  end)
  it("an unknown or vanished enclave is E11, as on real hosts", function()
    H.activate("healthy")
    local r = H.run({ "nitro-cli", "console", "--enclave-id", "i-0123456789abcdef0-enc18c0ffee0000000" })
    eq(r.exit_code, 11)
    match(r.stderr, "^%[ E11 %] Socket error%.")
  end)
end)

describe("concurrency", function()
  it("parallel run-enclave calls never lose an update: two enclaves on one CPU each", function()
    local s = H.activate("healthy")
    local tasks = {}
    for i = 1, 2 do
      tasks[i] = nd.spawn(function()
        return H.run({ "nitro-cli", "run-enclave", "--cpu-count", "1", "--memory", "512", "--eif-path", eif(s, "hello-basic.eif") })
      end)
    end
    local cids = {}
    for i = 1, 2 do
      local ok, r = tasks[i]:join()
      truthy(ok)
      -- a pool of full cores: cpu-count 1 is allowed by nitro-cli (the driver checks cores), both succeed
      eq(r.exit_code, 0, r.stderr)
      cids[#cids + 1] = cjson.decode(r.stdout).EnclaveCID
    end
    table.sort(cids)
    eq(cids, { 16, 17 })
    eq(#cjson.decode(H.run({ "nitro-cli", "describe-enclaves" }).stdout), 2)
  end)
end)

describe("vsock to the simulated enclaves", function()
  it("the vsock test enclave answers pong on CID:5000; others and stopped ones do not", function()
    local s = H.activate("healthy")
    local vsock = require "nd.vsock"
    local r = H.run({ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "1024", "--eif-path", eif(s, "hello-vsock.eif") })
    local cid = cjson.decode(r.stdout).EnclaveCID
    local res, err = vsock.ping(string.format("vsock:%d:5000", cid), { timeout = 30 })
    truthy(res, err)
    eq(res.reply, "pong")
    eq(res.address, "vsock:16:5000")
    -- a raw connection: anything else is "unknown"
    local c = assert(vsock.connect("vsock:16:5000", { timeout = 30 }))
    assert(c:write("hello"))
    eq(c:read(16, { timeout = 30 }), "unknown")
    c:close()
    -- another port, another CID
    local v, msg, code = vsock.ping("vsock:16:5001", { timeout = 2 })
    falsy(v)
    eq(code, "ECONNRESET")
    eq(msg, "connect vsock:16:5001: nothing listens at CID 16 port 5001 (ECONNRESET): the enclave is not running, its server has not started yet, or it listens on another port (check the CID with `nitro-cli describe-enclaves`)")
    falsy(vsock.ping("vsock:17:5000", { timeout = 2 }))
    -- the basic mode does not listen; a terminated enclave no longer answers
    H.run({ "nitro-cli", "terminate-enclave", "--all" })
    falsy(vsock.ping("vsock:16:5000", { timeout = 2 }))
    H.run({ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "1024", "--eif-path", eif(s, "hello-basic.eif") })
    falsy(vsock.ping("vsock:16:5000", { timeout = 2 }))
    -- unix and tcp addresses are untouched
    local _, _, ucode = vsock.ping("unix:/nonexistent/x.sock", { timeout = 1 })
    eq(ucode, "ENOENT")
  end)
  it("routing does not depend on the module table: a reference taken before, or a replaced table, still routes", function()
    local vsock = require "nd.vsock"
    local ping, connect = vsock.ping, vsock.connect
    local s = assert(H.sim.activate("healthy"))
    eq(vsock.ping, ping) -- nothing is patched
    H.run({ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "1024", "--eif-path", eif(s, "hello-vsock.eif") })
    vsock.ping = function() return { reply = "pong", address = "monkeypatched" } end
    local res = assert(ping("vsock:16:5000", { timeout = 30 }))
    eq(res.reply, "pong")
    eq(res.address, "vsock:16:5000")
    vsock.ping = ping
    local c = assert(connect("vsock:16:5000", { timeout = 30 }))
    c:close()
    s:close()
    -- after close there is no simulated enclave: vsock is the real machine's again (no vsock transport here)
    local v = ping("vsock:16:5000", { timeout = 1 })
    falsy(v)
  end)
end)
