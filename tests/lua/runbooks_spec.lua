-- The shipped runbooks against the simulated Nitro host, through the real CLI (--sim SCENARIO --json).
local json = require "nd.json"
local fs = require "nd.fs"

local function run(args, env)
  local argv = { spec.nitrodiag }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local e = { PATH = os.getenv("PATH"), HOME = "/root", NITRODIAG_PATH = "" }
  for k, v in pairs(env or {}) do e[k] = v end
  argv.env = e
  argv.timeout = 120
  local r = assert(spec.run(argv))
  local res = json.decode(r.stdout)
  return res, r
end

local function step(res, name)
  for _, st in ipairs(res.steps) do if st.name == name then return st end end
  error("no step " .. name)
end

local function finding(res, code)
  for _, f in ipairs(res.findings) do if f.code == code then return f end end
  return nil
end

local function bundle_members(path)
  local b = assert(require("nd.bundle").read(path))
  local names = {}
  for _, m in ipairs(b.members) do names[m.name:gsub("^[^/]+/", "")] = m end
  return names, b
end

describe("diag10", function()
  it("passes on a healthy host with a complete bundle", function()
    local out = spec.tmpdir()
    local res, r = run({ "--sim", "healthy", "--json", "--out", out, "diag10", "run_seconds=2",
                         })
    eq(res.verdict, "pass", r.stderr .. r.stdout:sub(1, 3000))
    eq(r.exit_code, 0)
    truthy(res.bundle and fs.exists(res.bundle), "bundle written")
    local names, b = bundle_members(res.bundle)
    eq(#b.problems, 0, "every sha256 in the manifest verifies")
    for _, want in ipairs({ "manifest.json", "summary.json", "report.md", "run.log", "run_basic.console.log",
                            "run_vsock.console.log", "run_hello.console.log", "describe_enclaves.json",
                            "nitro_enclaves.log.tail", "dmesg.tail", "docker_inspect_basic.json", "docker_inspect_vsock.json",
                            "build_basic.docker.log", "build_vsock.eif.log", "allocator.yaml", "err_logs.list" }) do
      truthy(names[want], "bundle has " .. want)
    end
    match(step(res, "run enclaves").message, "vsock ping answered")
  end, 90)

  it("names the image command and the Docker rule when the enclave reboots without [init]", function()
    local out = spec.tmpdir()
    local res = run({ "--sim", "reboot-no-init", "--json", "--out", out, "diag10", "run_seconds=2", "build=false", "runs=vsock" })
    eq(res.verdict, "fail")
    local f = finding(res, "ENCLAVE_REBOOT_NO_INIT")
    truthy(f, "reboot finding")
    match(table.concat(f.evidence, "\n"), 'Cmd=%["/bin/sh","%-c"')
    match(f.remediation, "Nitro runs only CMD when an image has one")
    truthy(finding(res, "IMG_SHELL_C") or finding(res, "IMG_CMD_REPLACES_ENTRYPOINT"), "the image lint saw it too")
  end, 60)

  it("gives the exact memory an EIF needs (E26)", function()
    local out = spec.tmpdir()
    local res = run({ "--sim", "e26-small-memory", "--json", "--out", out, "diag10", "run_seconds=2", "runs=",
                      "memory=512", "eifs=/home/ec2-user/data-processing.eif" })
    eq(res.verdict, "fail")
    local predicted, ran
    for _, f in ipairs(res.findings) do
      if f.code == "ENCLAVE_MEMORY_BELOW_EIF" and f.step == "predict E26/E27" then predicted = f end
      if f.code == "ENCLAVE_MEMORY_BELOW_EIF" and f.step == "run enclaves" then ran = f end
    end
    truthy(predicted, "E26 predicted before running")
    match(predicted.message, "needs %-%-memory ≥ 2148")
    match(predicted.remediation, "memory=2148")
    falsy(ran, "a run predicted to fail is not started")
    match(step(res, "run enclaves").message, "not run: predicted to fail: data%-processing %(E26%)")
  end, 60)

  it("names the enclave that holds the pool, and recovers when told to terminate it", function()
    local out = spec.tmpdir()
    local held = run({ "--sim", "cpu-pool-exhausted", "--json", "--out", out, "diag10", "run_seconds=2", "runs=basic" })
    truthy(finding(held, "ENCLAVES_HOLD_POOL"), "the enclave in the way is named")
    falsy(finding(held, "STALE_ENCLAVES"), "nothing terminated without being asked")
    local res = run({ "--sim", "cpu-pool-exhausted", "--json", "--out", out, "diag10", "run_seconds=2", "runs=basic",
                      "terminate=all" })
    local f = finding(res, "STALE_ENCLAVES")
    truthy(f, "stale enclave finding")
    match(f.message, "terminated 1 enclave%(s%) this run did not start %(terminate=all%)")
    match(f.evidence[1], "2 CPUs %[1,3%], 1024 MiB")
    eq(step(res, "run enclaves").outcome, "ok", "the run worked once the pool was freed")
    eq(res.verdict, "warn")
  end, 60)
end)

describe("allocator", function()
  it("shows the configuration and the service", function()
    local res = run({ "--sim", "healthy", "--json", "allocator" })
    eq(res.verdict, "pass")
    match(step(res, "show").message, "memory_mib 4096, cpu_count 2; service active")
    eq(step(res, "write allocator.yaml").outcome, "skipped")
  end)
  it("follows the workshop flow: stop, edit, start, enable, verified", function()
    local res = run({ "--sim", "healthy", "--json", "allocator", "memory_mib=512" })
    eq(res.verdict, "pass")
    for _, name in ipairs({ "validate", "no enclaves running", "stop service", "write allocator.yaml", "start and enable", "verify" }) do
      eq(step(res, name).outcome, "ok", name)
    end
    match(step(res, "verify").message, "reserved 512 MiB, 2 CPUs")
    eq(step(res, "rollback").outcome, "skipped")
  end)
  it("refuses while enclaves run", function()
    local res = run({ "--sim", "cpu-pool-exhausted", "--json", "allocator", "memory_mib=2048" })
    eq(res.verdict, "fail")
    truthy(finding(res, "ENCLAVES_RUNNING"))
    eq(step(res, "stop service").outcome, "skipped")
  end)
  it("rolls back when the service does not come back", function()
    local res = run({ "--sim", "healthy", "--json", "allocator", "memory_mib=100000" })
    eq(res.verdict, "fail")
    local f = finding(res, "ALLOCATOR_START_FAILED")
    truthy(f)
    -- the allocator's own error line, not only "see journalctl"
    -- the real script's lines (bootstrap/nitro-enclaves-allocator:319 and :83)
    match(f.message, "did not start with the new values: Memory configuration failed, rolling back memory reservations%.%.%.")
    match(table.concat(f.evidence, "\n"), "journal: Error: Failed to configure entire amount of requested memory%.")
    match(table.concat(f.evidence, "\n"), "journal: Error: ")
    eq(step(res, "rollback").outcome, "warn")
    match(step(res, "rollback").message, "rolled back")
  end)
  it("rejects cpu_count with cpu_pool before touching anything", function()
    local res = run({ "--sim", "healthy", "--json", "allocator", "cpu_count=2", "cpu_pool=2,3" })
    eq(res.verdict, "fail")
    eq(step(res, "stop service").outcome, "skipped")
  end)
end)

describe("cleanup", function()
  it("terminates the stale enclave, reports what it freed, and is safe twice", function()
    local sim = assert(require("nd.sim").activate("cpu-pool-exhausted"))
    local env = { PATH = os.getenv("PATH"), NITRODIAG_SIM_ROOT = os.getenv("NITRODIAG_SIM_ROOT") }
    local res = run({ "--root", require("nd.host").root(), "--json", "cleanup", "all=true" }, env)
    eq(res.verdict, "pass")
    match(step(res, "terminate").message, "terminated 1 enclave%(s%): freed 2 CPUs and 1024 MiB")
    eq(step(res, "verify").outcome, "ok")
    local again = run({ "--root", require("nd.host").root(), "--json", "cleanup", "all=true" }, env)
    eq(again.verdict, "pass")
    eq(step(again, "terminate").outcome, "skipped")
    sim:close()
  end)
end)

describe("doctor", function()
  it("passes on a healthy host", function()
    local res, r = run({ "--sim", "healthy", "--json", "doctor" })
    eq(res.verdict, "pass", r.stdout:sub(1, 2000))
    eq(step(res, "vsock-proxy allowlist").outcome, "ok")
    eq(step(res, "KMS proxy").outcome, "skipped")
  end)
  it("finds a vsock-proxy allowlist without the region's KMS endpoint (a scenario's own files)", function()
    local dir = spec.tmpdir()
    local scenario = dir .. "/no-kms-allowlist.lua"
    assert(fs.write(scenario, [[
return {
  description = "vsock-proxy allowlist without KMS",
  files = { ["/etc/nitro_enclaves/vsock-proxy.yaml"] = "allowlist:\n- {address: s3.us-east-1.amazonaws.com, port: 443}\n" },
}
]]))
    local res = run({ "--sim=" .. scenario, "--json", "doctor", "region=us-east-1" })
    local f = finding(res, "VSOCK_PROXY_NOT_ALLOWED")
    truthy(f)
    match(f.message, "kms%.us%-east%-1%.amazonaws%.com is not in the vsock%-proxy allowlist")
  end)
  it("runs the host checks diag10 runs: the same nd.checks functions, not copies", function()
    local checks = require "nd.checks"
    local function runs(path)
      local by = {}
      for _, st in ipairs(dofile(spec.source_dir .. path).steps) do by[st.run] = st.name end
      return by
    end
    local doctor, diag10 = runs("/scripts/doctor.lua"), runs("/scripts/diag10.lua")
    for _, f in ipairs({ "device", "allocator", "running_enclaves" }) do
      truthy(doctor[checks[f]] and diag10[checks[f]], f .. " is a step of both")
    end
    truthy(doctor[checks.artifacts_env], "doctor reports E51")
    truthy(diag10[checks.artifacts_dir], "diag10 prepares the artifacts directory")
  end)
  it("says build-enclave would fail with E51 when neither HOME nor NITRO_CLI_ARTIFACTS is set", function()
    local r = assert(spec.run{ spec.nitrodiag, "--sim", "healthy", "--json", "doctor", timeout = 60,
      env = { PATH = os.getenv("PATH"), NITRODIAG_PATH = "" } })
    local res = json.decode(r.stdout)
    local f = finding(res, "ARTIFACTS_PATH_UNSET")
    truthy(f, r.stdout:sub(1, 2000))
    eq(f.severity, "warn")
    match(f.message, "E51")
    eq(step(res, "artifacts path (E51)").outcome, "warn")
    local ok = run({ "--sim", "healthy", "--json", "doctor" })
    eq(step(ok, "artifacts path (E51)").outcome, "ok")
    match(step(ok, "artifacts path (E51)").message, "^HOME=/root")
  end)
  it("reports a missing driver with a stable code", function()
    local res = run({ "--sim", "no-driver", "--json", "doctor" })
    eq(res.verdict, "fail")
    truthy(finding(res, "DEVICE_MISSING"))
    eq(res.exit_code, 1)
  end)
end)

describe("triage", function()
  local FIX = spec.source_dir .. "/tests/nitro/fixtures/"
  local function triage(input, stdin)
    local argv = { spec.nitrodiag, "--json", "triage", input, env = { PATH = os.getenv("PATH"), NITRODIAG_PATH = "" },
                   stdin = stdin, timeout = 30 }
    local r = assert(spec.run(argv))
    return json.decode(r.stdout), r
  end
  it("finds the root cause in the seed's E26 output, with the numbers", function()
    local res, r = triage(FIX .. "seed_e26_run_enclave.txt")
    eq(r.exit_code, 1)
    local f = finding(res, "ENCLAVE_MEMORY_BELOW_EIF")
    truthy(f)
    match(f.message, "%-%-memory 512 MiB is below the EIF's minimum of 2148 MiB")
    match(f.message, "nitro%-cli E26")
    match(f.remediation, "%-%-memory 2148")
    local e39 = finding(res, "STALE_ENCLAVE_PROCESS")
    truthy(e39, "the E39 follow-up is grouped")
    eq(e39.severity, "info")
    match(e39.message, "^consequence of ENCLAVE_MEMORY_BELOW_EIF")
  end)
  it("finds the root cause in the seed's E27 output", function()
    local res = triage(FIX .. "seed_e27_run_enclave.txt")
    local f = finding(res, "ALLOCATOR_MEMORY_TOO_SMALL")
    truthy(f)
    match(f.message, "3072 MiB, more than the hugepage memory")
    match(f.remediation, "memory_mib: 3072")
  end)
  it("reads a console from stdin and names the reboot", function()
    local res = triage("-", "[    0.1] random: crng init done\nreboot: Restarting system\n")
    truthy(finding(res, "ENCLAVE_REBOOT_NO_INIT"))
  end)
  it("interprets KMS proxy logs with the kms-logs rules (wrapped and plain lines)", function()
    local res = triage(spec.source_dir .. "/tests/data/kmslogs/mixed.log")
    local denied = finding(res, "KMS_ACCESS_DENIED")
    truthy(denied, "access denied found")
    match(denied.message, "never retried")
    truthy(finding(res, "KMS_THROTTLED"))
    truthy(finding(res, "KMS_WRAPPED_LOG"))
  end)
  it("says plainly when it does not recognise the input", function()
    local res, r = triage("-", "hello world\n")
    eq(r.exit_code, 1)
    truthy(finding(res, "UNRECOGNISED"))
  end)
  it("a missing file is a usage error that says why", function()
    local res, r = triage("/nonexistent/x.log")
    eq(r.exit_code, 2)
    match(r.stderr, "nitrodiag: triage: /nonexistent/x.log: no such file")
    match(step(res, "read").message, "/nonexistent/x.log: no such file")
  end)
  it("refuses binary data and empty input with one line (usage errors)", function()
    local res, r = triage("-", ("\0\1\2\255garbage"):rep(500))
    eq(r.exit_code, 2)
    match(r.stderr, "binary data, not a log")
    match(step(res, "read").message, "binary data, not a log")
    res, r = triage("-", "")
    eq(r.exit_code, 2)
    match(r.stderr, "empty input")
  end)
  it("says one line for a 1 GiB log, without reading it", function()
    local dir = spec.tmpdir()
    local r = assert(spec.run({ "truncate", "-s", "1G", dir .. "/huge.log" }))
    eq(r.exit_code, 0)
    local res, rr = triage(dir .. "/huge.log")
    eq(rr.exit_code, 2)
    match(step(res, "read").message, "1024 MiB is more than the 256 MiB triage reads")
  end)
  it("reads mixed encodings (Latin-1, UTF-8, CRLF) and still finds the cause", function()
    local text = "caf\xe9 cr\xc3\xa8me\r\n\xff\xfe junk\r\n" ..
      assert(require("nd.fs").read(spec.source_dir .. "/tests/field/workshop-e27-allocator/output.txt")):gsub("\n", "\r\n")
    local res = triage("-", text)
    truthy(finding(res, "ALLOCATOR_MEMORY_TOO_SMALL"))
  end)
  it("finds a cause buried in a 8 MiB log (the reduced view keeps the error block)", function()
    local noise = ("[nitro-cli:1][INFO][2026-12-06T11:00:00.000Z][src/main.rs:63] Start Nitro CLI\n"):rep(50000)
    local block = assert(require("nd.fs").read(spec.source_dir .. "/tests/field/cli-518-device-notfound/output.txt"))
    local res = triage("-", noise .. block .. noise)
    truthy(finding(res, "DEVICE_MISSING"))
    match(step(res, "read").message, "around errors")
  end)
end)

describe("doctor with instance metadata", function()
  local proc = require "nd.proc"
  local nd = require "nd"
  local function start_imds()
    local lines = {}
    local h = proc.start{ spec.binary_dir .. "/nitrodiag-fake-kms", "--imds", "--max-seconds", "60",
                          on_line = function(stream, line) if stream == "stdout" then lines[#lines + 1] = line end end }
    local t0 = nd.now()
    while #lines < 1 and nd.now() - t0 < 30 do nd.sleep(0.05) end
    return h, assert(tonumber(lines[1]), "the fake IMDS did not start")
  end
  it("finds the role and measures the clock through IMDSv2", function()
    local h <close>, port = start_imds()
    local res, r = run({ "--sim", "healthy", "--json", "doctor", "imds=http://127.0.0.1:" .. port })
    local imds = step(res, "IMDSv2 and role")
    eq(imds.outcome, "ok", r.stdout:sub(1, 2000))
    match(imds.message, "^role [%w%-_]+, credentials expire %d%d%d%d%-")
    falsy(r.stdout:find("SecretAccessKey", 1, true), "credentials are never printed")
    eq(step(res, "clock").outcome, "ok")
    match(step(res, "clock").message, "^skew [%+%-]%d+ s$")
  end)
  it("reports an unreachable metadata service with its code", function()
    local res = run({ "--sim", "healthy", "--json", "doctor", "imds=http://127.0.0.1:1" })
    truthy(finding(res, "IMDS_UNREACHABLE"))
    eq(step(res, "clock").outcome, "skipped")
  end)
end)
