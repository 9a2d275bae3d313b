-- Real boots under QEMU's nitro-enclave machine (TCG), run by tests/realboot/run.sh: EIFs written by nd.eif with
-- Debian's kernel, nitrodiag-bootstrap and the test image (nd.sim.backend_qemu.eif_parts) boot through
-- nd-vhost-vsock; the heartbeat is answered, the console is the guest's, vsock-pingpong answers a ping through the
-- backend, the PCRs the guest reads from QEMU's NSM equal nd.eif's, a broken image reboots, and nothing is left.
local qemu = require "nd.sim.backend_qemu"
local backend = require "nd.sim.backend"
local eif = require "nd.eif"
local fs = require "nd.fs"
local uv = require "luv"

local function build(dir, cmd, env)
  local parts = assert(qemu.eif_parts(cmd, env))
  local path = dir .. "/app.eif"
  local r = assert(eif.write(path, { kernel = parts.kernel, cmdline = backend.CMDLINE, ramdisks = parts.ramdisks,
    metadata = "{}", arch = "x86_64" }))
  return path, r.pcrs
end

-- processes whose command line mentions s (our run directory): none may survive a stop
local function procs_with(s)
  local out = {}
  for _, pid in ipairs(fs.list("/proc") or {}) do
    if pid:match("^%d+$") then
      local cl = fs.read("/proc/" .. pid .. "/cmdline")
      if cl and cl:find(s, 1, true) then out[#out + 1] = pid .. ": " .. cl:gsub("%z", " ") end
    end
  end
  return out
end

-- streams the console into a string until want (a plain substring) shows, the enclave stops, or timeout
local function console_until(plan, want, timeout)
  local buf = {}
  local sink = { write = function(_, ...) for _, x in ipairs({ ... }) do buf[#buf + 1] = x end end, flush = function() end }
  local how = qemu.stream_console(sink, plan, timeout, function()
    return not (want and table.concat(buf):find(want, 1, true))
  end)
  return table.concat(buf), how
end

local function boot(dir, cmd, env)
  local path, pcrs = build(dir, cmd, env)
  local plan = assert(qemu.start{ eif = path, run = dir .. "/run", id = "i-realboot-enc" .. uv.os_getpid(), cid = 21,
    memory_mib = 512, cpus = 1, owner = uv.os_getpid() })
  return plan, pcrs, path
end

describe("real boot (qemu nitro-enclave, TCG)", function()
  it("boots to vsock-pingpong: heartbeat, console, ping through the backend, PCRs from /dev/nsm, no leftovers", function()
    local dir = spec.tmpdir()
    local plan, pcrs = boot(dir, { "/init" }, { "PATH=/bin", "VSOCK_PINGPONG_MODE=vsock" })
    local ok, why = qemu.wait_boot(plan, 240)
    assert(ok, "no heartbeat: " .. tostring(why) .. "\n" .. (fs.read(plan.run .. "/console.log") or "") ..
      (fs.read(plan.run .. "/supervisor.log") or "") .. (fs.read(plan.run .. "/qemu.log") or ""))
    local text = console_until(plan, "listening on vsock:any:5000", 120)
    assert(text:find("Linux version 6%.%d"), "the console is not a real kernel's:\n" .. text)
    assert(text:find("[init] starting", 1, true), "nitrodiag-init did not start:\n" .. text)
    assert(text:find("[init] launching /vsock-pingpong --mode vsock", 1, true), text)
    assert(text:find("[enclave] vsock mode: listening on vsock:any:5000", 1, true), text)
    -- the PCRs QEMU extended from the EIF's sections, read by the guest from /dev/nsm, equal nd.eif's
    for _, k in ipairs({ "PCR0", "PCR1", "PCR2" }) do
      local got = text:match("%[bootstrap%] " .. k .. " (%x+)")
      assert(got, k .. " was not read from /dev/nsm:\n" .. text)
      assert(got == pcrs[k], k .. ": NSM " .. got .. " vs nd.eif " .. tostring(pcrs[k]))
    end
    -- a host program reaches the guest's port 5000 through nd-vhost-vsock
    local c, err = qemu.connect(plan, 5000)
    assert(c, tostring(err) .. "\n" .. (fs.read(plan.run .. "/vhost.log") or ""))
    assert(c:write("ping"))
    local reply = c:read(16, { timeout = 10 })
    c:close()
    assert(reply == "pong", "reply: " .. tostring(reply))
    assert(qemu.alive(plan))
    qemu.stop(plan)
    assert(not qemu.alive(plan))
    -- the supervisor's own process watchdog (a fork of it) leaves the moment the supervisor does (the wait ends as
    -- soon as it has; its deadline allows for a loaded machine)
    local t0 = uv.hrtime()
    while #procs_with(plan.run) > 0 and uv.hrtime() - t0 < 30e9 do require("nd").sleep(0.02, { real = true }) end
    local left = procs_with(plan.run)
    assert(#left == 0, "left behind: " .. table.concat(left, "; "))
  end, 400)

  it("an image whose command cannot run (CMD /bin/sh -c … without a shell) reboots for real", function()
    local dir = spec.tmpdir()
    local plan = boot(dir, { "/bin/sh", "-c", "/vsock-pingpong --mode vsock" }, { "PATH=/bin" })
    assert(qemu.wait_boot(plan, 240), "no heartbeat")
    local text, how = console_until(plan, nil, 180)
    assert(how == "stopped", "the enclave did not stop by itself:\n" .. text)
    assert(text:find("execvpe: /bin/sh: No such file or directory", 1, true), text)
    assert(text:find("reboot: Restarting system", 1, true), text)
    assert(not text:find("[init]", 1, true), text)
    local res = require("nd.diagnose").run(text, {})
    assert(res.top and (res.top.code == "ENCLAVE_CMD_NOT_FOUND" or res.top.code == "ENCLAVE_REBOOT_NO_INIT"),
      "diagnosis: " .. tostring(res.top and res.top.code))
    local st = qemu.status(plan)
    assert(st and st.state == "stopped", "status: " .. tostring(st and st.state))
    local t0 = uv.hrtime()
    while #procs_with(plan.run) > 0 and uv.hrtime() - t0 < 30e9 do require("nd").sleep(0.05, { real = true }) end
    local left = procs_with(plan.run)
    assert(#left == 0, "left behind: " .. table.concat(left, "; "))
  end, 400)

  it("an enclave whose owner process dies stops with everything it started", function()
    local dir = spec.tmpdir()
    local path = build(dir, { "/init" }, { "PATH=/bin", "VSOCK_PINGPONG_MODE=basic" })
    -- the owner: a process we kill with SIGKILL (as if nitrodiag itself had been killed)
    local owner = uv.spawn("sleep", { args = { "300" } }, function() end)
    local plan = assert(qemu.start{ eif = path, run = dir .. "/run", id = "i-owner-enc", cid = 22, memory_mib = 256,
      cpus = 1, owner = owner:get_pid(), remove = dir .. "/run" })
    local t0 = uv.hrtime()
    while not (qemu.status(plan) or {}).qemu and uv.hrtime() - t0 < 60e9 do require("nd").sleep(0.05, { real = true }) end
    assert((qemu.status(plan) or {}).qemu, "QEMU never started")
    uv.kill(owner:get_pid(), "sigkill")
    t0 = uv.hrtime()
    while #procs_with(plan.run) > 0 and uv.hrtime() - t0 < 60e9 do require("nd").sleep(0.05, { real = true }) end
    local left = procs_with(plan.run)
    assert(#left == 0, "left behind: " .. table.concat(left, "; "))
    -- and the owner's temporary directory (the run directory here) is removed with it
    t0 = uv.hrtime()
    while fs.exists(plan.run) and uv.hrtime() - t0 < 30e9 do require("nd").sleep(0.05, { real = true }) end
    assert(not fs.exists(plan.run), "the run directory was left behind")
    owner:close()
  end, 240)

  it("nitrodiag boot reports the heartbeat, init and the application, and stops the enclave", function()
    local dir = spec.tmpdir()
    local path = build(dir, { "/init" }, { "PATH=/bin", "VSOCK_PINGPONG_MODE=vsock" })
    local r = spec.run{ spec.nitrodiag, "--json", "boot", path, "watch=8", "quiet_console=true", timeout = 380 }
    local ok, doc = pcall(require("cjson").decode, r.stdout)
    assert(ok and type(doc) == "table", "not JSON: " .. r.stdout .. r.stderr)
    local out
    for _, st in ipairs(doc.steps or {}) do if st.output then out = st.output end end
    out = out or doc.output or {}
    assert(out.heartbeat == true, r.stdout)
    assert(out.milestones and out.milestones.init and out.milestones.app, r.stdout)
    assert(out.nsm_pcrs and out.nsm_pcrs.PCR0, r.stdout)
    assert(#procs_with(path) == 0, "a process still runs the EIF")
  end, 400)
end)
