-- nitro-core from Lua: the error knowledge base against the reference's title list (copied here as an independent
-- source), nd.nitro running a stand-in nitro-cli (a shell script replaying the seed's real outputs), parse_* on
-- mixed and random input, nd.allocator / nd.preflight, nd.eif, and the explain / eif runbooks through the CLI.
local kb = require "nd.nitro_errors"
local nitro = require "nd.nitro"
local eif = require "nd.eif"
local allocator = require "nd.allocator"
local preflight = require "nd.preflight"
local host = require "nd.host"
local fs = require "nd.fs"
local json = require "nd.json"

local FIX = spec.source_dir .. "/tests/nitro/fixtures/"
local SEED26 = assert(fs.read(FIX .. "seed_e26_run_enclave.txt"))
local SEED27 = assert(fs.read(FIX .. "seed_e27_run_enclave.txt"))

-- reference/nitro.md, "nitro-cli error codes", verbatim.
local REFERENCE = [[E00 Unspecified error · E01 Missing mandatory argument · E02 Conflicting arguments · E03 Invalid argument provided ·
E04 Socket pair creation failure · E05 Process spawn failure · E06 Daemonize process failure · E07 Read from disk failure ·
E08 Unusable connection error · E09 Socket close error · E10 Socket connect set timeout error · E11 Socket error ·
E12 Epoll error · E13 Inotify error · E14 Invalid command · E15 Lock acquire failure · E16 Thread join failure ·
E17 Serde error · E18 File permissions error · E19 File operation failure · E20 Invalid CPU configuration ·
E21 No such CPU available in the pool · E22 Insufficient CPUs available in the pool · E23 Malformed CPU ID error ·
E24 CPU error · E25 No such hugepage flag error · E26 Insufficient memory requested · E27 Insufficient memory available ·
E28 Invalid enclave descriptor · E29 Ioctl failure · E30 Ioctl image get load info failure · E31 Ioctl set memory region failure ·
E32 Ioctl add vCPU failure · E33 Ioctl start enclave failure · E34 Memory overflow · E35 EIF file parsing error ·
E36 Enclave boot failure · E37 Enclave event wait error · E38 Enclave process command not executed error ·
E39 Enclave process connection failure · E40 Socket path not found · E41 Enclave process send reply failure ·
E42 Enclave mmap error · E43 Enclave munmap error · E44 Enclave console connection failure · E45 Enclave console read error ·
E46 Enclave console write output error · E47 Integer parsing error · E48 EIF building error · E49 Docker image build error ·
E50 Docker image pull error · E51 Artifacts path environment variable not set · E52 Blobs path environment variable not set ·
E53 Clock skew error · E54 Signal masking error · E55 Signal unmasking error · E56 Logger error · E57 Hasher error ·
E58 Naming error · E59 EIF signature checker error · E60 Signing error.]]

-- A stand-in nitro-cli: prints the given stdout/stderr files and exits with the given status.
local function fake_cli(dir, out, err, status, sleep)
  local script = dir .. "/nitro-cli"
  assert(fs.write(dir .. "/out", out or ""))
  assert(fs.write(dir .. "/err", err or ""))
  assert(fs.write(script, string.format("#!/bin/sh\necho \"$@\" > %s/argv\n%scat %s/out\ncat %s/err >&2\nexit %d\n",
    dir, sleep and ("sleep " .. sleep .. "\n") or "", dir, dir, status or 0), tonumber("755", 8)))
  return script
end

local function with_cli(path, fn)
  local old = host.nitro_cli()
  host.set_nitro_cli(path)
  local ok, err = pcall(fn)
  host.set_nitro_cli(old)
  if not ok then error(err, 0) end
end

local function nitrodiag(args, stdin)
  local argv = { spec.nitrodiag }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.env = { PATH = os.getenv("PATH"), HOME = os.getenv("HOME") or "/root", NITRODIAG_PATH = "" }
  argv.timeout = 60
  argv.stdin = stdin
  return assert(spec.run(argv))
end

describe("nd.nitro_errors", function()
  it("has every code of the reference with its exact title", function()
    local n = 0
    for code, title in REFERENCE:gmatch("(E%d%d) ([^·]-)%s*[·%.]") do
      title = title:gsub("%s+$", "")
      local e = kb.get(code)
      truthy(e, code .. " missing")
      eq(e.title, title, code)
      eq(e.doc_url, "https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html#" .. code)
      truthy(#e.meaning > 10 and #e.remediation > 0, code .. " needs meaning and remediation")
      n = n + 1
    end
    eq(n, 61)
    eq(#kb.list(), 61)
  end)
  it("flags retired codes, explain's unknown codes and the secondary E39", function()
    for _, c in ipairs({ "E30", "E31", "E32", "E33", "E37", "E52" }) do truthy(kb.get(c).retired, c) end
    falsy(kb.get("E29").retired)
    for _, c in ipairs({ "E57", "E58", "E59" }) do
      truthy(kb.get(c).explain_unknown, c)
      eq(kb.explain_text(c), "No such error code " .. c)
    end
    eq(kb.explain_text("E61"), "No such error code E61")
    truthy(kb.get(39).secondary)
  end)
  it("normalises codes", function()
    eq(kb.normalize("26"), "E26")
    eq(kb.normalize("e26"), "E26")
    eq(kb.normalize(7), "E07")
    eq(kb.normalize("E026"), "E26")
    eq(kb.normalize("x"), nil)
    eq(kb.get("E99"), nil)
  end)
  it("has nitro-cli's explain text for E26 as quoted in the seed (tabs shown as 8 spaces there)", function()
    local seed = assert(fs.read(FIX .. "seed_explain_e26.txt")):gsub("\n$", "")
    eq((kb.explain_text("E26"):gsub("\t", "        ")), seed)
  end)
  it("formats a headline", function()
    eq(kb.headline("E44", "x"), "[ E44 ] Enclave console connection failure. x")
  end)
end)

describe("nd.nitro parsers", function()
  it("turns the seed's E26 output into its root cause", function()
    local e = nitro.parse_errors(SEED26)
    truthy(e.recognised)
    eq(#e.blocks, 2)
    eq(e.root.code, "E26")
    eq(e.root.facts.memory_mib, 512)
    eq(e.root.facts.min_memory_mib, 2148)
    truthy(e.blocks[2].secondary)
    eq(e.blocks[2].failed_connections, 1)
    eq(e.raw, SEED26)
  end)
  it("turns the seed's E27 output into its root cause", function()
    local e = nitro.parse_errors(SEED27)
    eq(e.root.code, "E27")
    eq(e.root.facts.memory_mib, 3072)
    eq(e.preamble, { "Start allocating memory..." })
    eq(#e.blocks[2].extra, 2)
  end)
  it("finds blocks in mixed output and says when there are none", function()
    local e = nitro.parse_errors("$ nitro-cli console --enclave-id i-1\n" .. SEED27:gsub("Start allocating memory...\n", ""))
    eq(e.root.code, "E27")
    local g = nitro.parse_errors("hello\nworld")
    falsy(g.recognised)
    match(g.reason, "^unrecognised output")
    eq(g.raw, "hello\nworld")
  end)
  it("never raises on random or truncated input", function()
    local rnd = 12345
    local function r() rnd = (rnd * 1103515245 + 12345) % 2147483648 return rnd end
    for i = 1, 1500 do
      local src = i % 2 == 0 and SEED26 or SEED27
      local t
      if i % 3 == 0 then t = src:sub(1, r() % (#src + 1))
      else
        local b = {}
        for k = 1, r() % 200 do b[k] = string.char(r() % 256) end
        t = table.concat(b)
      end
      local e = nitro.parse_errors(t)
      truthy(type(e) == "table" and e.raw == t)
      local l = nitro.parse_err_log(t)
      truthy(type(l) == "table")
      nitro.parse_log_line(t)
      nitro.parse_json("describe-enclaves", t)
    end
  end)
  it("parses err logs and log lines", function()
    local l = nitro.parse_err_log("  Action: Run Enclave\n  Subactions:\n    Failed to execute command `Run`\n"
      .. "  Root error file: src/enclave_proc/resource_manager.rs\n  Root error line: 572\n  Version: 1.2.2\n")
    eq(l.action, "Run Enclave")
    eq(l.subactions, { "Failed to execute command `Run`" })
    eq(l.root_line, 572)
    local ll = nitro.parse_log_line("[enc-1a2b:567][ERROR][2021-06-18T21:46:43.249Z][src/main.rs:12] boom")
    eq(ll.source, "enc-1a2b")
    eq(ll.pid, 567)
    eq(ll.message, "boom")
    eq(nitro.err_log_time("/var/log/nitro_enclaves/err2021-06-18T21:46:43.249503129+00:00.log"),
      "2021-06-18T21:46:43.249503129+00:00")
  end)
end)

describe("nd.nitro runners", function()
  it("run_enclave returns the root cause E26 with the record when nitro-cli fails", function()
    local dir = spec.tmpdir()
    with_cli(fake_cli(dir, "", SEED26, 39), function()
      local v, msg, code, rec = nitro.run_enclave{ eif = "/x.eif", memory = 512, cpu_count = 2 }
      eq(v, nil)
      eq(code, "E26")
      match(msg, "minimum memory should be 2148 MB")
      eq(rec.exit_code, 39)
      eq(rec.root.facts.min_memory_mib, 2148)
      eq(assert(fs.read(dir .. "/argv")), "run-enclave --cpu-count 2 --memory 512 --eif-path /x.eif\n")
    end)
  end)
  it("run_enclave returns the JSON and the console text after it", function()
    local dir = spec.tmpdir()
    local out = '{\n  "EnclaveName": "x",\n  "EnclaveID": "i-0123456789abcdef0-enc0123456789abcdef",\n  "ProcessID": 7,\n'
      .. '  "EnclaveCID": 16,\n  "NumberOfCPUs": 2,\n  "CPUIDs": [\n    1,\n    3\n  ],\n  "MemoryMiB": 1024\n}\n'
      .. "reboot: Restarting system\n"
    with_cli(fake_cli(dir, out, "Start allocating memory...\nStarted enclave with enclave-cid: 16, memory: 1024 MiB, cpu-ids: [1, 3]\n", 0), function()
      local lines = {}
      local v, rec = nitro.run_enclave{ eif = "/x.eif", memory = 1024, cpu_count = 2, debug = true,
        attach_console = true, on_line = function(stream, l) lines[#lines + 1] = stream .. ":" .. l end, timeout = 20 }
      truthy(v, rec)
      eq(v.EnclaveCID, 16)
      eq(v.CPUIDs, { 1, 3 })
      match(rec.console, "reboot: Restarting system")
      truthy(#lines >= 3)
      eq(assert(fs.read(dir .. "/argv")),
        "run-enclave --cpu-count 2 --memory 1024 --eif-path /x.eif --debug-mode --attach-console\n")
    end)
  end)
  it("describe_enclaves and terminate parse their JSON; garbage is EBADMSG with the record", function()
    local dir = spec.tmpdir()
    with_cli(fake_cli(dir, "[]\n", "", 0), function()
      local v = assert(nitro.describe_enclaves())
      eq(#v, 0)
    end)
    with_cli(fake_cli(dir, '{"EnclaveName":"a","EnclaveID":"i-1","Terminated":true}\n',
      "Successfully terminated enclave i-1.\n", 0), function()
      local v = assert(nitro.terminate{ id = "i-1" })
      eq(v.Terminated, true)
      eq(assert(fs.read(dir .. "/argv")), "terminate-enclave --enclave-id i-1\n")
    end)
    with_cli(fake_cli(dir, "Segmentation fault\n", "", 0), function()
      local v, msg, code, rec = nitro.describe_enclaves()
      eq(v, nil)
      eq(code, "EBADMSG")
      match(msg, "unrecognised output")
      eq(rec.stdout, "Segmentation fault\n")
    end)
    with_cli(fake_cli(dir, "", "weird failure\n", 3), function()
      local _, msg, code = nitro.describe_enclaves()
      eq(code, "EBADMSG")
      match(msg, "weird failure")
    end)
  end)
  it("times out, and reports a missing nitro-cli", function()
    local dir = spec.tmpdir()
    with_cli(fake_cli(dir, "[]", "", 0, 5), function()
      local _, _, code = nitro.describe_enclaves{ timeout = 0.3 }
      eq(code, "ETIMEDOUT")
    end)
    with_cli("/nonexistent/nitro-cli", function()
      local _, msg, code = nitro.describe_enclaves()
      eq(code, "ENOENT")
      match(msg, "not found")
    end)
  end)
end)

describe("nd.allocator and nd.preflight", function()
  it("parses and edits allocator.yaml under a root, with a backup", function()
    local root = spec.tmpdir()
    local uv = require "luv"
    assert(uv.fs_mkdir(root .. "/etc", tonumber("755", 8)))
    assert(uv.fs_mkdir(root .. "/etc/nitro_enclaves", tonumber("755", 8)))
    local text = "---\n# memory\nmemory_mib: 512\ncpu_count: 2\n"
    assert(fs.write(root .. "/etc/nitro_enclaves/allocator.yaml", text))
    local old = host.root()
    assert(host.set_root(root))
    local ok, err = pcall(function()
      local cfg = assert(allocator.load())
      eq(cfg.memory_mib, 512)
      local bak = assert(allocator.write{ memory_mib = 2148 })
      eq(assert(fs.read(bak)), text)
      eq(assert(fs.read(root .. "/etc/nitro_enclaves/allocator.yaml")), "---\n# memory\nmemory_mib: 2148\ncpu_count: 2\n")
      local p = assert(preflight.check{ eif_size = 536 * 1048576 + 1, memory = 3072, cpu_count = 2 })
      eq(p.first.code, "E27")
      eq(p.memory_source, "allocator.yaml")
      eq(p.issues[1].limit, 2148)
    end)
    host.set_root(old)
    if not ok then error(err, 0) end
    local _, msg, code = allocator.parse("---\nmemory_mib: 1\nbogus: 2\n")
    eq(code, "EINVAL")
    eq(msg, "Error in /etc/nitro_enclaves/allocator.yaml:3 - unexpected: bogus")
    eq(allocator.parse_cpu_list("2,3,6-9"), { 2, 3, 6, 7, 8, 9 })
  end)
  it("predicts the seed's E26 before anything runs", function()
    local p = assert(preflight.check{ eif_size = 537 * 1048576, memory = 512, cpu_count = 2, host = false,
      allocator = { memory_mib = 4096, cpu_count = 2 } })
    falsy(p.ok)
    eq(p.first.headline, "[ E26 ] Insufficient memory requested. User provided `memory` is 512 MB, but based on the "
      .. "EIF file size, the minimum memory should be 2148 MB")
    eq(p.min_memory_mib, 2148)
  end)
end)

describe("nd.eif and the runbooks", function()
  it("writes, reads and describes an EIF", function()
    local dir = spec.tmpdir()
    local info = assert(eif.write(dir .. "/a.eif", { kernel = ("k"):rep(3000), cmdline = "console=ttyS0",
      ramdisks = { "boot", "app" }, metadata = { ImageName = "a", ImageVersion = "1" } }))
    eq(info.CheckCRC, true)
    eq(info.sections[4].name, "ramdisk")
    eq(eif.min_memory_mib(dir .. "/a.eif"), 4)
    local d = json.decode(assert(eif.describe(dir .. "/a.eif")))
    eq(d.Measurements.PCR0, info.Measurements.PCR0)
    local _, msg, code = eif.read_string(".eif")
    eq(code, "EBADMSG")
    match(msg, "offset 4")
  end)
  it("explain E26 / 26 / a file / stdin", function()
    local r = nitrodiag({ "explain", "26" })
    eq(r.exit_code, 0)
    match(r.stdout, "E26  Insufficient memory requested")
    r = nitrodiag({ "explain", FIX .. "seed_e26_run_enclave.txt" })
    match(r.stdout, "this EIF needs at least 2148 MiB")
    match(r.stdout, "Then E39")
    r = nitrodiag({ "--json", "explain", "-" }, SEED27)
    local res = json.decode(r.stdout)
    eq(res.findings[1].code, "ALLOCATOR_MEMORY_TOO_SMALL", "the cause, from the registry")
    match(res.findings[1].message, "%[ E27 %]")
    match(res.findings[1].remediation, "memory_mib: 3072")
    r = nitrodiag({ "explain", "E58" })
    match(r.stdout, 'it prints "No such error code E58"')
    r = nitrodiag({ "explain", "E77" })
    eq(r.exit_code, 2, "a code nitro-cli does not have is a usage error")
    match(r.stderr, "E77 is not a nitro%-cli error code")
  end)
  it("eif: human output and --json with describe-eif's fields", function()
    local dir = spec.tmpdir()
    local info = assert(eif.write(dir .. "/b.eif", { kernel = "kernel", cmdline = "c", ramdisks = { "r1", "r2" } }))
    local r = nitrodiag({ "--json", "eif", dir .. "/b.eif" })
    eq(r.exit_code, 0)
    local res = json.decode(r.stdout)
    eq(res.Measurements, info.Measurements)
    eq(res.CheckCRC, true)
    eq(res.EifVersion, 4)
    eq(res.IsSigned, false)
    r = nitrodiag({ "eif", dir .. "/b.eif" })
    match(r.stdout, "PCR0  " .. info.Measurements.PCR0)
    assert(fs.write(dir .. "/c.eif", ".eif\0\4"))
    r = nitrodiag({ "eif", dir .. "/c.eif" })
    eq(r.exit_code, 1)
    match(r.stdout, "truncated header")
  end)
end)

describe("nitro-core against the simulated host", function()
  local okmod, sim = pcall(require, "nd.sim")
  local function activate(name)
    local s = assert(sim.activate(name))
    return s
  end
  it("nd.nitro, nd.preflight and explain agree on the seed's E26 (e26-small-memory)", function()
    if not okmod then return end
    local s = activate("e26-small-memory")
    local ok, err = pcall(function()
      local eifpath = s.root .. "/home/ec2-user/data-processing.eif"
      -- preflight predicts it from the EIF, allocator.yaml and sysfs under the simulated root
      local p = assert(preflight.check{ eif = eifpath, memory = 512, cpu_count = 2 })
      eq(p.first.code, "E26")
      eq(p.min_memory_mib, 2148)
      -- nitro-cli (the stand-in on PATH) says the same, and its err log parses
      local v, msg, code, rec = nitro.run_enclave{ eif = eifpath, memory = 512, cpu_count = 2, timeout = 30 }
      eq(v, nil)
      eq(code, "E26")
      eq(msg, p.first.headline)
      eq(rec.root.facts.min_memory_mib, p.min_memory_mib)
      local log = assert(nitro.read_err_log(rec.root.err_log_path))
      truthy(log.recognised)
      eq(log.action, "Run Enclave")
      -- and the eif runbook computes the same minimum from the file
      eq(eif.min_memory_mib(eifpath), 2148)
      -- with enough memory it runs, and describe-enclaves sees it
      local info = assert(nitro.run_enclave{ eif = eifpath, memory = 2148, cpu_count = 2, timeout = 30 })
      local list = assert(nitro.describe_enclaves())
      eq(list[1].EnclaveID, info.EnclaveID)
      local t = assert(nitro.terminate{ all = true })
      eq(t[1].Terminated, true)
    end)
    s:close()
    if not ok then error(err, 0) end
  end)
  it("preflight predicts E27 on e27-allocator-too-small like the stand-in", function()
    if not okmod then return end
    local s = activate("e27-allocator-too-small")
    local ok, err = pcall(function()
      local eifpath = s.root .. "/home/ec2-user/data-processing.eif"
      local p = assert(preflight.check{ eif = eifpath, memory = 3072, cpu_count = 2 })
      eq(p.first.code, "E27")
      local _, msg, code = nitro.run_enclave{ eif = eifpath, memory = 3072, cpu_count = 2, timeout = 30 }
      eq(code, "E27")
      eq(msg, (p.first.headline:match("^[^\n]*")))
    end)
    s:close()
    if not ok then error(err, 0) end
  end)
  it("preflight predicts the stale enclave's E29 on cpu-pool-exhausted like the stand-in", function()
    if not okmod then return end
    local s = activate("cpu-pool-exhausted")
    local ok, err = pcall(function()
      local running = assert(nitro.describe_enclaves())
      eq(#running, 1)
      local p = assert(preflight.check{ eif = s.eifs[1], memory = 2048, cpu_count = 2, running = running })
      eq(p.first.code, "E29")
      match(p.first.note, "NE_ERR_NO_CPUS_AVAIL_IN_POOL")
      local _, _, code = nitro.run_enclave{ eif = s.eifs[1], memory = 2048, cpu_count = 2, timeout = 30 }
      eq(code, "E29")
    end)
    s:close()
    if not ok then error(err, 0) end
  end)
end)
