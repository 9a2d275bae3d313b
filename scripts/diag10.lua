-- diag10: the full diagnosis of a Nitro Enclaves host in about three minutes — the seed runbook (an SSM bash
-- script) done right. It checks the host (nitro-cli, the device, the allocator), avoids E51, predicts E26/E27 before
-- anything runs, cleans up stale enclaves, builds the vsock-pingpong images (basic and vsock, no `/bin/sh -c`) and
-- their EIFs, runs each one with an attached console for a bounded time (pinging the vsock one while it runs), runs
-- the AWS hello enclave as the control, and analyses every console and error output into findings with the numbers.
-- Everything the old script collected goes into the bundle, plus what it lost: the full run log and the build logs.
local nd = require "nd"
local proc = require "nd.proc"
local host = require "nd.host"
local fs = require "nd.fs"
local json = require "nd.json"
local nitro = require "nd.nitro"
local allocator = require "nd.allocator"
local preflight = require "nd.preflight"
local errors = require "nd.nitro_errors"

local ALLOCATOR_UNIT = "nitro-enclaves-allocator.service"
local VSOCK_PORT = 5000
local HELLO_EIF = "/usr/share/nitro_enclaves/examples/hello.eif"

-- The shipped test-image build context: a directory holding enclave/Dockerfile and the sources it compiles (core/,
-- enclave/): installed under the share directory, or the source tree itself.
local function default_context()
  for _, d in ipairs({ host.share_dir() .. "/image", host.source_dir() }) do
    if d ~= "" and fs.exists(d .. "/enclave/Dockerfile") then return d end
  end
  return nil
end

local function lines_of(text)
  local out = {}
  for l in (text or ""):gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end

local function short(text, n)
  text = (text or ""):gsub("%s+$", "")
  local first = text:match("^[^\n]*") or ""
  if #first > (n or 160) then first = first:sub(1, n or 160) .. "…" end
  return first
end

-- A finding for the root cause of a nitro-cli failure, with the numbers from its text (nd.diagnose).
local function error_finding(s, record, context)
  local f = require("nd.diagnose").nitro_error(record and record.errors, context)
  if f then s:finding(f) end
  return f ~= nil
end

-- What a console log says about the enclave's life (nd.console), as findings of this step.
local function analyse_console(s, name, console, inspect)
  local res = require("nd.console").analyse(console, { name = name, inspect = inspect, expect_init = name ~= "hello" })
  for _, f in ipairs(res.findings) do s:finding(f) end
  return res.verdict
end

-- Runs one EIF with an attached console for run_seconds; pings it over vsock when asked. Returns a run summary.
local function run_one(s, name, eif, opts)
  local a = s.args
  local console, stderr_lines = {}, {}
  local cid
  s:progress(string.format("%s: nitro-cli run-enclave --attach-console (%d s)", name, a.run_seconds))
  local started = nd.now()
  local ping_task
  local function on_line(stream, line)
    if stream == "stderr" then
      stderr_lines[#stderr_lines + 1] = line
      local c = line:match("Started enclave with enclave%-cid: (%d+)")
      if c then cid = tonumber(c) end
    else
      console[#console + 1] = line
      if opts.ping and not ping_task and cid and line:find("listening on port", 1, true) then
        ping_task = nd.spawn(function()
          local vsock = require "nd.vsock"
          return vsock.ping(string.format("vsock:%d:%d", cid, VSOCK_PORT), { timeout = 5 })
        end)
      end
    end
  end
  local info, err, code, record = nitro.run_enclave{ eif = eif, memory = a.memory, cpu_count = a.cpu_count,
    debug = true, attach_console = true, on_line = on_line, timeout = a.run_seconds }
  record = record or {}
  -- An attached console runs until we stop it: the timeout is how a good run ends.
  local run = { name = name, eif = eif, cid = cid or (info and info.EnclaveCID), console = console,
                duration = nd.now() - started, exit_code = record.exit_code }
  if opts.ping and not ping_task and run.cid then
    -- The enclave never said it listens: try anyway, it tells whether anything is there.
    ping_task = nd.spawn(function()
      return require("nd.vsock").ping(string.format("vsock:%d:%d", run.cid, VSOCK_PORT), { timeout = 5 })
    end)
  end
  if ping_task then
    local _, res, perr, pcode = ping_task:join()
    run.ping = res and { reply = res.reply, rtt_ms = res.rtt_ms } or { error = perr, code = pcode }
  end
  local log = {}
  for _, l in ipairs(console) do log[#log + 1] = l end
  if s.bundle then
    s.bundle:add_string("run_" .. name .. ".console.log", table.concat(console, "\n") .. "\n")
    s.bundle:add_string("run_" .. name .. ".log", table.concat({
      "$ " .. table.concat(record.argv or { "nitro-cli", "run-enclave" }, " "),
      table.concat(stderr_lines, "\n"),
      string.format("%s_rc=%s", name, tostring(record.exit_code)) }, "\n") .. "\n")
  end
  -- The console says what happened to the enclave; a nitro-cli error after it (E45: the console closed because the
  -- enclave went away) is then a consequence, not the cause.
  run.verdict = analyse_console(s, name, console, opts.inspect)
  local root = not info and code ~= "ETIMEDOUT" and record.errors and record.errors.root
  if root and run.verdict ~= "ok" and run.verdict ~= "silent" and (root.code == "E45" or root.code == "E36") then
    s:finding{ code = root.code, severity = "info",
      message = string.format("%s: nitro-cli then ended with %s (%s): a consequence of the enclave going away",
        name, root.code, root.title or ""), evidence = { root.headline } }
    run.failed = run.verdict
  elseif root then
    error_finding(s, record, "running " .. name)
    run.failed = root.code
  elseif not info and code ~= "ETIMEDOUT" and not record.timed_out then
    run.failed = code or "error"
    s:finding{ code = "RUN_FAILED", severity = "fail", message = name .. ": run-enclave failed: " .. short(err),
               evidence = stderr_lines }
  end
  -- Terminate what this run started so the next one has the CPUs (the run may outlive its console).
  if run.cid or info then nitro.terminate{ all = true, timeout = 30 } end
  return run
end

return {
  name = "diag10",
  description = "Full enclave diagnosis: host checks, E26/E27 prediction, build and run test enclaves, vsock ping, bundle",
  categories = { "diagnosis", "canned" },
  args = {
    { name = "memory", type = "integer", default = 1024, min = 1, help = "MiB for each run-enclave" },
    { name = "cpu_count", type = "integer", default = 2, min = 1, help = "vCPUs for each run-enclave" },
    { name = "run_seconds", type = "number", default = 20, min = 1, help = "how long each enclave runs with its console attached" },
    { name = "runs", type = "list", default = "basic,vsock,hello", help = "which runs: basic, vsock, hello (the AWS control)" },
    { name = "build", type = "boolean", default = true, help = "build the images from context (false: use the existing images)" },
    { name = "context", type = "string", help = "docker build context holding enclave/Dockerfile (default: the shipped one), or a directory with a Dockerfile" },
    { name = "image", type = "string", default = "hello-enclave", help = "image repository; runs use <image>:<mode>" },
    { name = "hello_eif", type = "string", default = HELLO_EIF, help = "EIF of the AWS hello enclave (the control run)" },
    { name = "eifs", type = "list", default = "", help = "more EIFs to check and run (comma-separated paths)" },
  },
  deadline = 180,
  collect = true,
  steps = {
    { name = "nitro-cli", timeout = 15, required = true, collects = { "nitro_cli_version.txt" },
      run = function(s)
        local r, err = proc.run{ host.nitro_cli(), "--version", timeout = 10 }
        if not r then
          s:finding{ code = "NITRO_CLI_MISSING", severity = "fail", message = "nitro-cli is not available: " .. err,
            remediation = "install aws-nitro-enclaves-cli (on Amazon Linux 2023 also aws-nitro-enclaves-cli-devel; " ..
              "there is no separate allocator package there)" }
          return
        end
        s.data.nitro_cli_version = short(r.stdout)
        if s.bundle then s.bundle:add_string("nitro_cli_version.txt", r.stdout .. r.stderr) end
        s:ok(s.data.nitro_cli_version)
      end },

    { name = "device", timeout = 5,
      run = function(s)
        local path = host.path("/dev/nitro_enclaves")
        local st = require("luv").fs_stat(path)
        if not st then
          s:finding{ code = "E19", severity = "fail", message = "/dev/nitro_enclaves is missing: the Nitro Enclaves driver is not loaded",
            evidence = { "stat /dev/nitro_enclaves: no such file" },
            remediation = "load the driver (modprobe nitro_enclaves) on an instance type with enclave support enabled " ..
              "(EnclaveOptions.Enabled=true at launch)" }
          return
        end
        s:ok(string.format("present, mode %o", st.mode & tonumber("7777", 8)))
      end },

    { name = "allocator", timeout = 20,
      collects = { "allocator.yaml", "allocator_service.status", "journal_" .. ALLOCATOR_UNIT .. ".log" },
      run = function(s)
        local cfg, text_or_err, code = allocator.load()
        if not cfg then
          s:finding{ code = "ALLOCATOR_CONFIG", severity = "fail", message = "allocator.yaml: " .. tostring(text_or_err),
            evidence = { allocator.PATH .. ": " .. tostring(code) },
            remediation = "fix " .. allocator.PATH .. " (nitrodiag allocator shows and edits it) and restart " .. ALLOCATOR_UNIT }
        else
          s.data.allocator = cfg
          if s.bundle then s.bundle:add_string("allocator.yaml", text_or_err) end
        end
        local r = proc.run{ "systemctl", "is-active", ALLOCATOR_UNIT, timeout = 10 }
        local state = r and short(r.stdout) or "unknown"
        if s.bundle then
          s.bundle:add_command("allocator_service.status", { "systemctl", "status", "--no-pager", ALLOCATOR_UNIT }, { timeout = 10 })
          s.bundle:add_journal(ALLOCATOR_UNIT, { lines = 200 })
        end
        if state ~= "active" then
          s:finding{ code = "ALLOCATOR_INACTIVE", severity = "fail",
            message = ALLOCATOR_UNIT .. " is " .. state .. ": no memory or CPUs are reserved for enclaves",
            evidence = { "systemctl is-active " .. ALLOCATOR_UNIT .. ": " .. state },
            remediation = "sudo systemctl start " .. ALLOCATOR_UNIT .. " && sudo systemctl enable " .. ALLOCATOR_UNIT ..
              "; if it fails, see journalctl -u " .. ALLOCATOR_UNIT }
          return
        end
        if cfg then
          s:ok(string.format("active: %s MiB, %s", tostring(cfg.memory_mib),
            cfg.cpu_pool and ("cpu_pool " .. cfg.cpu_pool) or (tostring(cfg.cpu_count) .. " CPUs")))
        end
      end },

    { name = "artifacts path (E51)", timeout = 5,
      run = function(s)
        -- build-enclave fails with E51 when neither HOME nor NITRO_CLI_ARTIFACTS is set (SSM runs without HOME).
        local dir = host.getenv("NITRO_CLI_ARTIFACTS")
        if dir and dir ~= "" then s:ok("NITRO_CLI_ARTIFACTS=" .. dir) return end
        dir = fs.tmpdir("nitrodiag-artifacts")
        host.setenv("NITRO_CLI_ARTIFACTS", dir)
        s.data.artifacts_dir = dir
        if not host.getenv("HOME") then
          s:finding{ code = "E51", severity = "info",
            message = "HOME is not set (as under SSM): set NITRO_CLI_ARTIFACTS=" .. dir .. " so build-enclave cannot fail with E51",
            remediation = "in your own scripts: export NITRO_CLI_ARTIFACTS=/tmp/nitro-cli-artifacts (or HOME=/root)" }
        end
        s:ok("NITRO_CLI_ARTIFACTS=" .. dir)
      end },

    { name = "stale enclaves", timeout = 40, collects = { "describe_enclaves.before.json" },
      run = function(s)
        local list, err = nitro.describe_enclaves()
        if not list then s:fail("describe-enclaves failed: " .. short(err)) return end
        if s.bundle then s.bundle:add_json("describe_enclaves.before.json", list) end
        if #list == 0 then s:ok("none running") return end
        local ev, cpus, mem = {}, 0, 0
        for _, e in ipairs(list) do
          ev[#ev + 1] = string.format("%s %s CID %s, %s CPUs %s, %s MiB, %s", e.EnclaveID, e.EnclaveName or "",
            tostring(e.EnclaveCID), tostring(e.NumberOfCPUs), json.encode(e.CPUIDs or json.array()), tostring(e.MemoryMiB), e.State)
          cpus = cpus + (e.NumberOfCPUs or 0)
          mem = mem + (e.MemoryMiB or 0)
          local ok, terr = nitro.terminate{ id = e.EnclaveID, timeout = 30 }
          if not ok then ev[#ev + 1] = "terminate " .. e.EnclaveID .. " failed: " .. short(terr) end
        end
        local left = nitro.describe_enclaves() or {}
        s.data.freed = { cpus = cpus, memory_mib = mem, enclaves = #list }
        s:finding{ code = "STALE_ENCLAVES", severity = #left == 0 and "warn" or "fail",
          message = string.format("%d stale enclave(s) held %d CPUs and %d MiB%s", #list, cpus, mem,
            #left == 0 and "; terminated them" or "; some could not be terminated"),
          evidence = ev,
          remediation = "stale enclaves keep the CPU pool (E29/E22/E39 \"no CPUs available\"): terminate them before a run " ..
            "(nitrodiag cleanup), and make your deployment terminate enclaves it replaces" }
      end },

    { name = "build images", timeout = 120,
      collects = function(a)
        local out = {}
        for _, m in ipairs(a.runs) do
          if m == "basic" or m == "vsock" then
            for _, f in ipairs({ "build_%s.docker.log", "docker_inspect_%s.json", "build_%s.eif.log", "eif_%s.measurements.json" }) do
              out[#out + 1] = f:format(m)
            end
          end
        end
        return out
      end,
      run = function(s)
        local a = s.args
        s.data.eifs = {}
        local modes = {}
        for _, r in ipairs(a.runs) do if r == "basic" or r == "vsock" then modes[#modes + 1] = r end end
        if #modes == 0 then s:skip("no basic/vsock run asked for") end
        local ctxdir = a.context or default_context()
        if a.build and not ctxdir then
          s:fail("no image context: the shipped enclave/Dockerfile was not found; pass context=DIR or build=false")
          return
        end
        local outdir = fs.tmpdir("nitrodiag-eif")
        s.data.eif_dir = outdir
        local built, lint_failed = 0, false
        for _, mode in ipairs(modes) do
          local tag = a.image .. ":" .. mode
          if a.build then
            s:progress("docker build " .. tag)
            local dockerfile = fs.exists(ctxdir .. "/enclave/Dockerfile") and (ctxdir .. "/enclave/Dockerfile") or (ctxdir .. "/Dockerfile")
            local argv = { "docker", "build", "--build-arg", "MODE=" .. mode, "-t", tag, "-f", dockerfile, ctxdir }
            argv.timeout = 90
            local r, err = proc.run(argv)
            argv.timeout = nil
            if s.bundle then
              s.bundle:add_string("build_" .. mode .. ".docker.log", "$ " .. table.concat(argv, " ") .. "\n" ..
                (r and (r.stdout .. r.stderr .. "\nexit " .. r.exit_code) or tostring(err)) .. "\n")
            end
            if not r or r.exit_code ~= 0 then
              s:finding{ code = "E49", severity = "fail", message = "docker build of " .. tag .. " failed",
                evidence = lines_of(r and r.stderr or err), remediation = "see build_" .. mode .. ".docker.log in the bundle" }
              goto continue
            end
          end
          do
            local r = proc.run{ "docker", "inspect", tag, timeout = 20 }
            local inspect
            if r and r.exit_code == 0 then
              if s.bundle then s.bundle:add_string("docker_inspect_" .. mode .. ".json", r.stdout) end
              local doc = json.decode(r.stdout)
              inspect = doc and doc[1] and doc[1].Config
              s.data["inspect_" .. mode] = inspect
              s:log(string.format("%s: Entrypoint=%s Cmd=%s", tag, json.encode(inspect and inspect.Entrypoint or json.null),
                json.encode(inspect and inspect.Cmd or json.null)))
              local okl, lint = pcall(require, "nd.imagelint")
              if okl then
                local res = lint.inspect(r.stdout)
                for _, f in ipairs(res and res.findings or {}) do
                  if f.severity ~= "info" then
                    lint_failed = lint_failed or f.severity == "fail"
                    s:finding{ code = f.code, severity = f.severity, message = tag .. ": " .. f.message,
                               evidence = f.evidence and { f.evidence } or nil, remediation = f.rule }
                  end
                end
              end
            else
              s:finding{ code = "IMAGE_MISSING", severity = "fail", message = "docker inspect " .. tag .. " failed",
                         evidence = lines_of(r and r.stderr or "") }
              goto continue
            end
            s:progress("nitro-cli build-enclave " .. tag)
            local eif = outdir .. "/" .. mode .. ".eif"
            local blog = {}
            local m, err, code, record = nitro.build_enclave{ docker_uri = tag, output = eif, timeout = 100,
              on_line = function(_, line) blog[#blog + 1] = line end }
            if s.bundle then s.bundle:add_string("build_" .. mode .. ".eif.log", table.concat(blog, "\n") .. "\n") end
            if not m then
              if not error_finding(s, record, "building the " .. mode .. " EIF") then
                s:finding{ code = code or "E48", severity = "fail", message = "build-enclave " .. tag .. " failed: " .. short(err) }
              end
            else
              s.data.eifs[mode] = eif
              built = built + 1
              local pcr = m.Measurements or {}
              s:log(string.format("%s: PCR0 %s", eif, tostring(pcr.PCR0)))
              if s.bundle then s.bundle:add_json("eif_" .. mode .. ".measurements.json", m) end
            end
          end
          ::continue::
        end
        if built == #modes then
          s:ok(string.format("%d image(s) and EIF(s) built%s", built, lint_failed and " (the image lint failed)" or ""))
        end
      end },

    { name = "predict E26/E27", timeout = 15,
      run = function(s)
        local a = s.args
        local targets = {}
        for mode, path in pairs(s.data.eifs or {}) do targets[#targets + 1] = { name = mode, eif = path, local_file = true } end
        for _, p in ipairs(a.eifs) do targets[#targets + 1] = { name = fs.basename(p), eif = p } end
        if a.hello_eif and fs.exists(host.path(a.hello_eif)) then
          targets[#targets + 1] = { name = "hello", eif = a.hello_eif }
        end
        if #targets == 0 then s:skip("no EIF to check") end
        table.sort(targets, function(x, y) return x.name < y.name end)
        local problems = 0
        for _, t in ipairs(targets) do
          local path = t.local_file and t.eif or host.path(t.eif)
          local res, err = preflight.check{ eif = path, memory = a.memory, cpu_count = a.cpu_count }
          if not res then
            s:finding{ code = "EIF_UNREADABLE", severity = "fail", message = t.eif .. ": " .. tostring(err) }
            problems = problems + 1
          else
            s:log(string.format("%s: %d bytes, needs ≥ %d MiB; allocator %s MiB free (%s)", t.eif, res.eif_size,
              res.min_memory_mib, tostring(res.memory_free_mib), res.memory_source))
            for _, issue in ipairs(res.issues or {}) do
              problems = problems + 1
              local msg, fix
              if issue.code == "E26" then
                msg = string.format("predicted for %s: the EIF is %.0f MiB, so run-enclave needs --memory ≥ %d; memory=%d is too little",
                  t.eif, res.eif_size / 1048576, res.min_memory_mib, a.memory)
                fix = string.format("run with memory=%d or more (the 4× rule), and keep allocator.yaml memory_mib ≥ %d",
                  res.min_memory_mib, res.min_memory_mib)
              elseif issue.code == "E27" then
                msg = string.format("predicted for %s: memory=%d MiB is more than the %s MiB the allocator reserved",
                  t.eif, a.memory, tostring(issue.limit))
                fix = string.format("raise memory_mib in %s to ≥ %d and restart %s (nitrodiag allocator memory_mib=%d)",
                  allocator.PATH, a.memory, ALLOCATOR_UNIT, a.memory)
              else
                msg = "predicted for " .. t.eif .. ": " .. tostring(issue.message)
                fix = table.concat((errors.get(issue.code) or {}).remediation or {}, "; ")
              end
              s:finding{ code = issue.code, severity = "fail", message = msg, evidence = { issue.headline or issue.message },
                         remediation = fix }
            end
          end
        end
        if problems == 0 then s:ok(#targets .. " EIF(s) fit memory=" .. a.memory .. " and the allocator") end
        s.data.targets = targets
      end },

    { name = "run enclaves", timeout = 150,
      collects = function(a)
        local out = {}
        for _, m in ipairs(a.runs) do
          if m == "basic" or m == "vsock" then out[#out + 1] = "run_" .. m .. ".console.log"; out[#out + 1] = "run_" .. m .. ".log" end
        end
        return out
      end,
      run = function(s)
        local a = s.args
        local plan = {}
        for _, r in ipairs(a.runs) do
          if (r == "basic" or r == "vsock") and s.data.eifs and s.data.eifs[r] then
            plan[#plan + 1] = { name = r, eif = s.data.eifs[r], ping = r == "vsock", inspect = s.data["inspect_" .. r] }
          end
        end
        for _, p in ipairs(a.eifs) do plan[#plan + 1] = { name = fs.basename(p):gsub("%.eif$", ""), eif = p } end
        if #plan == 0 then s:skip("nothing to run (no EIF was built)") end
        nitro.terminate{ all = true, timeout = 30 }
        s.data.runs = {}
        local bad = 0
        for _, p in ipairs(plan) do
          local run = run_one(s, p.name, p.eif, p)
          s.data.runs[#s.data.runs + 1] = run
          local verdict = run.failed and "failed" or run.verdict
          if p.ping then
            if run.ping and run.ping.reply == "pong" then
              s:log(string.format("%s: vsock ping CID %s port %d: pong in %.1f ms", p.name, tostring(run.cid), VSOCK_PORT, run.ping.rtt_ms))
            elseif not run.failed and verdict == "ok" then
              s:finding{ code = "VSOCK_NO_PONG", severity = "fail",
                message = string.format("%s: no pong from CID %s port %d: %s", p.name, tostring(run.cid), VSOCK_PORT,
                  run.ping and (run.ping.error or ("reply " .. tostring(run.ping.reply))) or "the enclave never got a CID"),
                remediation = "check the console for the listener line; vsock needs the enclave running and listening on port 5000" }
              verdict = "no-pong"
            end
          end
          if verdict ~= "ok" then bad = bad + 1 end
          s:log(string.format("%s: %s, %d console lines, %.1f s", p.name, verdict, #run.console, run.duration))
        end
        if bad == 0 then s:ok(#plan .. " run(s) came up" .. ((s.data.runs[2] or s.data.runs[1] or {}).ping and ", vsock ping answered" or "")) end
      end },

    { name = "hello control", timeout = 60, collects = { "run_hello.console.log", "run_hello.log" },
      when = function(args) for _, r in ipairs(args.runs) do if r == "hello" then return true end end return false end,
      skip_reason = "not asked for (runs=)",
      run = function(s)
        local a = s.args
        if not fs.exists(host.path(a.hello_eif)) then
          s:skip("the AWS hello enclave is not installed (" .. a.hello_eif .. ", from aws-nitro-enclaves-cli-devel)")
        end
        nitro.terminate{ all = true, timeout = 30 }
        local run = run_one(s, "hello", a.hello_eif, {})
        if run.failed or run.verdict ~= "ok" and run.verdict ~= "silent" then return end
        if #run.console == 0 then
          s:finding{ code = "HELLO_SILENT", severity = "warn", message = "the hello enclave printed nothing on its console" }
        else
          s:ok(string.format("hello ran: %d console lines", #run.console))
        end
      end },

    { name = "collect", timeout = 40, always = true,
      collects = { "/var/log/nitro_enclaves/err*.log", "err_logs.list", "nitro_enclaves.log.tail", "dmesg.tail",
                   "vsock_proxy_service.status", "journal_kms-proxy-host.log", "describe_enclaves.json" },
      run = function(s)
        local b = s.bundle
        if not b then s:skip("no bundle for this run") end
        -- each artifact succeeds or fails on its own: one that raises is recorded with why, the others still come
        local failed = 0
        local function each(name, f)
          local ok, e = pcall(f)
          if not ok then
            failed = failed + 1
            b:record(name, { status = "error", error = tostring(e) })
          end
        end
        each("err*.log", function() b:add_glob("/var/log/nitro_enclaves/err*.log", { prefix = "" }) end)
        local list = {}
        for _, e in ipairs(b:entries()) do
          if e.status == "ok" and e.glob == "/var/log/nitro_enclaves/err*.log" then list[#list + 1] = e.source or e.name end
        end
        each("err_logs.list", function() b:add_string("err_logs.list", table.concat(list, "\n") .. "\n") end)
        each("nitro_enclaves.log.tail", function()
          b:add_file("nitro_enclaves.log.tail", "/var/log/nitro_enclaves/nitro_enclaves.log", { tail_lines = 250 })
        end)
        each("dmesg.tail", function() b:add_dmesg({ lines = 220 }) end)
        each("vsock_proxy_service.status", function()
          b:add_command("vsock_proxy_service.status", { "systemctl", "status", "--no-pager", "nitro-enclaves-vsock-proxy.service" }, { timeout = 10 })
        end)
        each("journal_kms-proxy-host.log", function() b:add_journal("kms-proxy-host", { lines = 500 }) end)
        each("describe_enclaves.json", function()
          local after, derr = nitro.describe_enclaves()
          if after then
            b:add_json("describe_enclaves.json", after)
          else
            b:record("describe_enclaves.json", { status = "error", kind = "command", source = "nitro-cli describe-enclaves",
                                                 error = "describe-enclaves failed: " .. short(derr) })
          end
        end)
        -- err logs written during this run: their root cause, read back
        local roots = {}
        for _, p in ipairs(list) do
          local okp, parsed = pcall(nitro.read_err_log, p)
          if not okp then parsed = nil end
          if parsed and parsed.recognised then
            roots[#roots + 1] = string.format("%s: %s (%s:%s)", fs.basename(p), parsed.action or "?", parsed.root_file or "?",
              tostring(parsed.root_line))
          end
        end
        if #roots > 0 then s:log("err logs:\n" .. table.concat(roots, "\n")) end
        if failed > 0 then
          s:warn(string.format("%d err log(s) collected; %d artifact(s) could not be (see the manifest)", #list, failed))
        else
          s:ok(string.format("%d err log(s), logs, dmesg and service states collected", #list))
        end
      end },

    { name = "cleanup", timeout = 40, always = true,
      run = function(s)
        local ok, err = nitro.terminate{ all = true, timeout = 30 }
        local left = nitro.describe_enclaves() or {}
        if s.data.eif_dir then fs.rm_rf(s.data.eif_dir) end
        if s.data.artifacts_dir then fs.rm_rf(s.data.artifacts_dir) end
        if #left > 0 then
          s:fail(#left .. " enclave(s) still running after terminate-enclave --all" .. (ok and "" or (": " .. short(err))))
        else
          s:ok("no enclave left running")
        end
      end },
  },

  report = function(result)
    local lines = {}
    for _, st in ipairs(result.steps) do
      if st.name == "run enclaves" and st.outcome == "ok" then lines[#lines + 1] = "enclaves: " .. (st.message or "") end
    end
    return #lines > 0 and table.concat(lines, "\n") or nil
  end,
}
