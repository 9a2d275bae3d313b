-- scripts/boot.lua — `nitrodiag boot app.eif`: boots an EIF here, for real, under QEMU's nitro-enclave machine (the
-- enclave developer's inner loop, no Nitro instance needed), shows its console and says what the console shows:
-- the heartbeat (nitro-cli's boot signal), init reached, the application started, a reboot, a panic, `Could not open
-- /env file` — the causes through the diagnosis knowledge base (nd.diagnose: lua/nd/rules/console*.lua and the rest).
-- The PCRs QEMU's NSM holds (when the image's bootstrap prints them) are compared with the EIF's own (nd.eif).
-- Needs QEMU >= 9.2 with libcbor (tools/build-qemu.sh) and nd-vhost-vsock; docs/realboot.md.
local eif = require "nd.eif"
local fs = require "nd.fs"
local diagnose = require "nd.diagnose"
local findings = require "nd.findings"
local qemu = require "nd.sim.backend_qemu"
local uv = require "luv"

local plan    -- the running enclave (nd.sim.backend_qemu), stopped by the last step or the cleanup
local rundir

local function stop()
  if plan then qemu.stop(plan) plan = nil end
  if rundir then fs.rm_rf(rundir) rundir = nil end
end

-- What the console shows, in the order a boot goes.
local function milestones(text)
  return {
    kernel = text:find("Linux version", 1, true) ~= nil,
    init = text:find("Run /init as init process", 1, true) ~= nil or text:find("[init] starting", 1, true) ~= nil,
    app = text:find("[init] launching", 1, true) ~= nil or text:find("[enclave] ", 1, true) ~= nil,
    reboot = text:find("reboot: Restarting system", 1, true) ~= nil,
    panic = text:match("(Kernel panic[^\n]*)"),
    env = text:match("(Could not open /env file[^\n]*)"),
  }
end

return {
  name = "boot",
  description = "Boot an EIF locally under QEMU's nitro-enclave machine, show its console and diagnose what it shows",
  categories = { "enclave", "image" },
  args = {
    { name = "file", type = "string", positional = 1, required = true, help = "the .eif file" },
    { name = "memory", type = "integer", default = 512, help = "enclave memory (MiB)" },
    { name = "cpus", type = "integer", default = 1, help = "vCPUs" },
    { name = "cid", type = "integer", default = 16, help = "the enclave's CID" },
    { name = "watch", type = "number", default = 15,
      help = "seconds to watch the console after the heartbeat (the enclave is stopped then, unless it ended)" },
    { name = "boot_timeout", type = "number", default = 180, help = "seconds to wait for the heartbeat (TCG is slow)" },
    { name = "quiet_console", type = "boolean", default = false, help = "do not print the console, only the findings" },
  },
  deadline = 600, -- the enclave also stops by itself when this process ends, however it ends (its owner)
  steps = {
    { name = "eif", timeout = 120, required = true,
      run = function(s)
        local st = uv.fs_stat(s.args.file)
        if not st or st.type ~= "file" then s:usage(s.args.file .. ": no such file") end
        local r, err = eif.read(s.args.file)
        if not r then
          s:finding{ code = "EIF_INVALID", severity = "fail", message = tostring(err), evidence = { s.args.file },
                     remediation = "rebuild the image with nitro-cli build-enclave (`nitrodiag eif FILE` says more)" }
          return
        end
        if r.arch and r.arch ~= "x86_64" then
          s:fail("the EIF is built for " .. tostring(r.arch) .. "; only x86_64 EIFs boot under qemu-system-x86_64 here")
          return
        end
        s.data.pcrs = r.pcrs or {}
        s:ok(string.format("valid EIF v%d, PCR0 %s…", r.version, tostring((r.pcrs or {}).PCR0):sub(1, 16)))
      end },

    { name = "boot", timeout = 400, required = true,
      run = function(s)
        local rt, why = qemu.runtime()
        if not rt then s:fail("cannot boot here: " .. why) return end
        local dir = uv.fs_mkdtemp("/tmp/nd-boot-XXXXXX")
        if not dir then s:fail("cannot create a temporary directory in /tmp") return end
        rundir = dir
        local path = uv.fs_realpath(s.args.file) or s.args.file
        local p, err = qemu.start{ eif = path, run = dir .. "/run", id = "i-local-enc" .. uv.os_getpid(), cid = s.args.cid,
          memory_mib = s.args.memory, cpus = s.args.cpus, owner = uv.os_getpid(), remove = dir }
        if not p then s:fail(err) return end
        plan = p
        s:progress("booting " .. s.args.file .. " (waiting for the heartbeat)")
        local ok, berr = qemu.wait_boot(plan, s.args.boot_timeout)
        s.data.heartbeat = ok == true
        local st = qemu.status(plan) or {}
        s.data.accel = st.accel
        if not ok then
          s.data.boot_error = berr
          s:log("no heartbeat: " .. tostring(berr))
          s:ok("booted without a heartbeat (" .. tostring(berr) .. ")")
          return
        end
        s:ok("heartbeat received (CID 3 port 9000) under " .. tostring(st.accel or "?"):upper())
      end },

    { name = "console", timeout = 300,
      run = function(s)
        if not plan then s:skip("not booted") end
        local buf = {}
        local sink = { write = function(_, ...)
          for _, x in ipairs({ ... }) do
            buf[#buf + 1] = x
            if not s.args.quiet_console then io.stderr:write(x) end
          end
        end, flush = function() if not s.args.quiet_console then io.stderr:flush() end end }
        local ended = qemu.stream_console(sink, plan, s.data.heartbeat and s.args.watch or 0.5) == "stopped"
        local text = table.concat(buf)
        s.data.console = text
        s.data.ended = ended
        local m = milestones(text)
        s.data.milestones = m
        local said = {}
        if m.kernel then said[#said + 1] = "kernel booted" end
        if m.init then said[#said + 1] = "init reached" end
        if m.app then said[#said + 1] = "application started" end
        if m.env then said[#said + 1] = "init could not open /env" end
        if m.panic then said[#said + 1] = "kernel panic" end
        if m.reboot then said[#said + 1] = "the enclave rebooted" end
        if ended and not m.reboot then said[#said + 1] = "the enclave stopped" end
        if not ended then said[#said + 1] = string.format("still running after %g s", s.args.watch) end
        s.data.out = { console_lines = select(2, text:gsub("\n", "")), heartbeat = s.data.heartbeat, milestones = m,
                       accel = s.data.accel }
        s:ok(table.concat(said, ", "))
      end },

    { name = "diagnose", timeout = 30,
      run = function(s)
        if not s.data.console then s:skip("no console") end
        local text = s.data.console
        -- the stream starts with the kernel, as `nitro-cli console` does; the PCR lines are nitrodiag-bootstrap's
        local res = diagnose.run(text, {})
        if res.top then
          s:finding(res.top)
          for i = 2, #res.causes do
            local c = res.causes[i]
            if c.confidence >= 0.5 then
              s:finding{ code = c.code, severity = "info", message = "also possible: " .. c.message, evidence = c.evidence }
            end
          end
        elseif not s.data.heartbeat then
          s:finding(findings.make("BOOT_HEARTBEAT_TIMEOUT", {},
            { (text:match("([^\n]*)\n?$") or ""):sub(1, 200) }))
        else
          s:ok("nothing wrong on the console")
        end
        -- PCRs: what QEMU's NSM holds (nitrodiag-bootstrap prints them) against the EIF's own
        local got = {}
        for n, hex in text:gmatch("%[bootstrap%] PCR(%d+) (%x+)") do got["PCR" .. n] = hex end
        local bad = {}
        for _, k in ipairs({ "PCR0", "PCR1", "PCR2" }) do
          if got[k] and s.data.pcrs and s.data.pcrs[k] and got[k] ~= s.data.pcrs[k] then bad[#bad + 1] = k end
        end
        if #bad > 0 then
          s:finding{ code = "EIF_PCR_MISMATCH", severity = "warn",
            message = table.concat(bad, ", ") .. " read from the NSM differ from the EIF's own measurements",
            evidence = { "NSM " .. bad[1] .. " " .. got[bad[1]], "EIF " .. bad[1] .. " " .. s.data.pcrs[bad[1]] } }
        elseif got.PCR0 then
          s:log("PCR0/1/2 from /dev/nsm equal the EIF's")
        end
        s.data.out = s.data.out or {}
        s.data.out.nsm_pcrs = got
        s:output(s.data.out)
      end },

    { name = "stop", timeout = 30,
      run = function(s)
        if not plan then s:skip("nothing running") end
        stop()
        s:ok("QEMU and nd-vhost-vsock stopped")
      end },
  },
}
