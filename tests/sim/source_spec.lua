-- The simulated host against nitro-cli's own source (v1.5.0; tests/fixtures/nitro-cli-source/strings.lua, each
-- string with its file and line): the ten points where the simulator used to differ from nitro-cli 1.4/1.5
-- (issue 11), each compared with a string taken from the source, never with the simulator's own output.
local H = dofile(spec.source_dir .. "/tests/sim/helpers.lua")
local fs = require "nd.fs"
local cjson = require "cjson"
local nitro = require "nd.nitro"
local preflight = require "nd.preflight"
local nd = require "nd"

after_each(H.close_all)

local function eif(s, name) return s:path("/home/ec2-user/" .. name) end
local function fill(tpl, ...)
  local vals, i = { ... }, 0
  return (tpl:gsub("{[^}]*}", function() i = i + 1 return tostring(vals[i] or "MISSING_INFO") end))
end
local function block(code, ...) return "[ " .. code .. " ] " .. fill(H.src("detailed", code), ...) end
local function first_line(s) return (s:match("^[^\n]*")) end
local function run(...) return H.run({ "nitro-cli", ... }) end
local function last_err_log(s)
  local logs = H.err_logs(s)
  return assert(fs.read(s:path("/var/log/nitro_enclaves/" .. logs[#logs])))
end

describe("1. --attach-console implies debug mode", function()
  it("starts a DEBUG_MODE enclave and attaches (commands_parser.rs debug_mode())", function()
    local s = H.activate("healthy")
    local r = H.run({ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "1024", "--attach-console",
      "--eif-path", eif(s, "hello-basic.eif") }, { timeout = 3 })
    truthy(r.timed_out)
    match(r.stdout, "^{\n  \"EnclaveName\": \"hello%-basic\"")
    match(r.stdout, "\nSuccessfully connected to the console%.\n")
    eq(cjson.decode(run("describe-enclaves").stdout)[1].Flags, "DEBUG_MODE")
  end)
end)

describe("2. the order of run-enclave's checks", function()
  it("E22 before E26 (CpuInfo before EnclaveHandle::new)", function()
    local s = H.activate("e26-small-memory")
    local r = run("run-enclave", "--cpu-count", "4", "--memory", "512", "--eif-path", eif(s, "data-processing.eif"))
    eq(first_line(r.stderr), first_line(block("E22", "cpu-count", 4)))
    eq(r.exit_code, 39)
  end)
  it("E29 from NE_CREATE_VM before 'Start allocating memory...', even when memory is short too; preflight agrees", function()
    local s = H.activate("cpu-pool-exhausted")
    local r = run("run-enclave", "--cpu-count", "2", "--memory", "8192", "--eif-path", eif(s, "hello-vsock.eif"))
    eq(first_line(r.stderr), block("E29"))
    falsy(r.stderr:find(H.src("resource_manager", "start_alloc"), 1, true))
    local log = last_err_log(s):gsub("\n  Subactions:.*", "") -- the E39 one
    local logs = H.err_logs(s)
    local e29 = assert(fs.read(s:path("/var/log/nitro_enclaves/" .. logs[#logs - 1])))
    truthy(e29:find(H.src("resource_manager", "create_vm"), 1, true), e29)
    truthy(e29:find(H.src("ioctl", "NE_ERR_NO_CPUS_AVAIL_IN_POOL"), 1, true), e29)
    local _ = log
    local p = assert(preflight.check{ eif = eif(s, "hello-vsock.eif"), memory = 8192, cpu_count = 2,
      held = nitro.held(assert(nitro.describe_enclaves())) })
    eq(p.issues[1].code, "E29")
    eq(p.issues[2].code, "E27")
    truthy(p.issues[1].note:find(H.src("ioctl", "NE_ERR_NO_CPUS_AVAIL_IN_POOL"), 1, true))
  end)
  it("a missing EIF is the first check (commands.rs opens it before anything)", function()
    H.activate("no-driver")
    local r = run("run-enclave", "--cpu-count", "2", "--memory", "512", "--eif-path", "/nonexistent.eif")
    eq(r.stderr:match("^[^\n]*\n[^\n]*"), block("E19") .. fill(H.src("detailed", "E19.2"), "/nonexistent.eif", "Open"))
  end)
end)

describe("3. E29 backtraces carry nitro-cli's English sub-actions", function()
  it("the parser's driver facts and explain read them", function()
    local s = H.activate("cpu-pool-exhausted")
    local r = H.run({ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "1024", "--eif-path",
      eif(s, "hello-vsock.eif") }, { env = { BACKTRACE = "1", PATH = os.getenv("PATH"),
      NITRODIAG_SIM_ROOT = os.getenv("NITRODIAG_SIM_ROOT"), NITRODIAG_SIM_CLOCK = os.getenv("NITRODIAG_SIM_CLOCK") } })
    local p = nitro.parse_errors(r.stderr)
    local root = p.blocks[1]
    eq(root.code, "E29")
    eq(root.facts.driver_error, "NE_ERR_NO_CPUS_AVAIL_IN_POOL")
    eq(root.facts.driver_message, H.src("ioctl", "NE_ERR_NO_CPUS_AVAIL_IN_POOL"))
    falsy(r.stderr:find("NE_ERR_", 1, true), "nitro-cli never prints the driver's names")
  end)
end)

describe("5. E57-E60 and E58 for unknown names", function()
  it("terminate-enclave and console --enclave-name <unknown> are E58 with lib.rs's words", function()
    local s = H.activate("healthy")
    for _, sub in ipairs({ "terminate-enclave", "console" }) do
      local r = run(sub, "--enclave-name", "nope")
      eq(r.exit_code, 58, sub)
      eq(first_line(r.stderr), block("E58"))
      truthy(last_err_log(s):find(H.src("lib", "name_none"), 1, true))
    end
  end)
  it("explain: E60 has its text, E57-E59 are unknown", function()
    H.activate("healthy")
    eq(run("explain", "--error-code", "E60").stderr, H.src("explain", "E60") .. "\n")
    eq(run("explain", "--error-code", "E58").stderr, fill(H.src("explain", "unknown"), "E58") .. "\n")
  end)
end)

describe("6. arguments as nitro-cli parses them", function()
  it("--memory accepts M and G (parse_memory), rejects other units with E03", function()
    local s = H.activate("healthy")
    local r = run("run-enclave", "--cpu-count", "2", "--memory", "1G", "--eif-path", eif(s, "hello-basic.eif"))
    eq(r.exit_code, 0, r.stderr)
    eq(cjson.decode(r.stdout).MemoryMiB, 1024)
    run("terminate-enclave", "--all")
    r = run("run-enclave", "--cpu-count", "2", "--memory", "512M", "--eif-path", eif(s, "hello-basic.eif"))
    eq(r.exit_code, 0, r.stderr)
    run("terminate-enclave", "--all")
    r = run("run-enclave", "--cpu-count", "2", "--memory", "512K", "--eif-path", eif(s, "hello-basic.eif"))
    eq(r.exit_code, 3)
    eq(first_line(r.stderr), block("E03", "memory", "512K"))
    truthy(last_err_log(s):find(H.src("commands_parser", "memory_unit"), 1, true))
  end)
  it("usage errors are clap's: exit 2, no block", function()
    local s = H.activate("healthy")
    for _, argv in ipairs({ { "run-enclave", "--memory", "512", "--eif-path", eif(s, "hello-basic.eif") },
      { "run-enclave", "--cpu-count", "2", "--cpu-ids", "1", "--memory", "512", "--eif-path", "x" },
      { "run-enclave", "--bogus" }, { "terminate-enclave" }, { "frobnicate" } }) do
      local r = run(table.unpack(argv))
      eq(r.exit_code, 2, table.concat(argv, " "))
      match(r.stderr, "^error: ")
      match(r.stderr, "\n\nFor more information, try '%-%-help'%.\n$")
      falsy(r.stderr:find("[ E", 1, true))
    end
    local r = run()
    eq(r.exit_code, 2)
    match(r.stderr, "^CLI for enclave lifetime management\n\nUsage: nitro%-cli %[COMMAND%]\n")
  end)
  it("--config: E17 for bad JSON, E01/E02 without info, attach_console implies debug", function()
    local s = H.activate("healthy")
    local dir = spec.tmpdir()
    fs.write(dir .. "/bad.json", "{ not json")
    local r = run("run-enclave", "--config", dir .. "/bad.json")
    eq(r.exit_code, 17)
    eq(first_line(r.stderr), block("E17"))
    fs.write(dir .. "/none.json", cjson.encode{ eif_path = eif(s, "hello-basic.eif"), memory_mib = 512 })
    r = run("run-enclave", "--config", dir .. "/none.json")
    eq(first_line(r.stderr), block("E01"))
    truthy(last_err_log(s):find(H.src("commands_parser", "config_missing_cpu"), 1, true))
    fs.write(dir .. "/both.json", cjson.encode{ eif_path = eif(s, "hello-basic.eif"), memory_mib = 512, cpu_count = 2, cpu_ids = { 1 } })
    r = run("run-enclave", "--config", dir .. "/both.json")
    eq(first_line(r.stderr), block("E02"))
    r = run("run-enclave", "--config", dir .. "/missing.json")
    eq(r.stderr:match("^[^\n]*\n[^\n]*"), block("E19") .. fill(H.src("detailed", "E19.2"), dir .. "/missing.json", "Open"))
  end)
  it("duplicate --cpu-ids are listed as get_duplicate_cpus prints them", function()
    local s = H.activate("healthy")
    local r = run("run-enclave", "--cpu-ids", "3", "1", "3", "1", "--memory", "512", "--eif-path", eif(s, "hello-basic.eif"))
    eq(first_line(r.stderr), block("E20", "cpu-ids", "13"))
  end)
end)

describe("10. nitro_enclaves.log and describe-enclaves --metadata", function()
  it("enclave-process lines under enc-…:<pid>, the hang-up at WARN with enclave_proc/mod.rs's words", function()
    local s = H.activate("reboot-no-init")
    local r = run("run-enclave", "--cpu-count", "2", "--memory", "1024", "--eif-path", s:path("/home/ec2-user/app.eif"))
    eq(r.exit_code, 0, r.stderr)
    nd.sleep(1)
    eq(cjson.decode(run("describe-enclaves").stdout), {})
    local log = assert(fs.read(s:path("/var/log/nitro_enclaves/nitro_enclaves.log")))
    match(log, "%[enc%-%x+:%d+%]%[WARN%]%[[^%]]+%]%[src/enclave_proc/mod%.rs:207%] "
      .. H.src("enclave_proc", "hangup"):gsub("%p", "%%%0") .. "\n")
    match(log, "%[nitro%-cli:%d+%]%[INFO%]%[[^%]]+%]%[src/main%.rs:64%] " .. H.src("main", "start") .. "\n")
  end)
  it("--metadata adds ImageName and ImageVersion (the image ID without --version, as enclave_build writes it)", function()
    local s = H.activate("healthy")
    run("run-enclave", "--cpu-count", "2", "--memory", "1024", "--eif-path", eif(s, "hello-basic.eif"))
    local d = cjson.decode(run("describe-enclaves", "--metadata").stdout)[1]
    eq(d.ImageName, "hello-enclave")
    local id = H.run({ "docker", "inspect", "--format", "{{.Id}}", "hello-enclave:basic" }).stdout
    eq("sha256:" .. d.ImageVersion .. "\n", id)
    eq(cjson.decode(run("describe-enclaves").stdout)[1].ImageName, nil)
  end)
end)

describe("10. err logs: nitro-cli's backtrace with the root error line of the host's version", function()
  it("E26: resource_manager.rs:491 on 1.4.2 (git show v1.4.2:src/enclave_proc/resource_manager.rs), :488 on 1.5.0", function()
    local s = H.activate("e26-small-memory")
    run("run-enclave", "--cpu-count", "2", "--memory", "512", "--eif-path", eif(s, "data-processing.eif"))
    local logs = H.err_logs(s)
    local e26 = assert(fs.read(s:path("/var/log/nitro_enclaves/" .. logs[#logs - 1])))
    local at_least = fill(H.src("resource_manager", "at_least"), 2148, 4)
    eq(e26, table.concat({ "  Action: Run Enclave", "  Subactions:", "    Failed to execute command `Run`",
      "    " .. H.src("enclave_proc", "trigger"), "    " .. H.src("commands", "manager"), "    " .. H.src("resource_manager", "handle"),
      "    " .. at_least, "  Root error file: src/enclave_proc/resource_manager.rs", "  Root error line: 491",
      "  Version: 1.4.2" }, "\n"))
    local dir = spec.tmpdir()
    fs.write(dir .. "/v15.lua", 'return { extends = "e26-small-memory", description = "1.5.0", host = { nitro_cli_version = "1.5.0" } }')
    local s2 = H.activate(dir .. "/v15.lua")
    run("run-enclave", "--cpu-count", "2", "--memory", "512", "--eif-path", eif(s2, "data-processing.eif"))
    logs = H.err_logs(s2)
    match(assert(fs.read(s2:path("/var/log/nitro_enclaves/" .. logs[#logs - 1]))), "\n  Root error line: 488\n  Version: 1%.5%.0$")
  end)
end)

describe("7. EIFs", function()
  it("describe-eif: bytes after the last section are E35 'Found invalid EIF section' (image-format EifReader::from_eif)", function()
    local s = H.activate("healthy")
    local dir = spec.tmpdir()
    local src = assert(fs.read(eif(s, "hello-basic.eif")))
    fs.write(dir .. "/tail.eif", src .. ("\0"):rep(64))
    local r = run("describe-eif", "--eif-path", dir .. "/tail.eif")
    eq(r.exit_code, 35)
    eq(first_line(r.stderr), block("E35"))
    truthy(last_err_log(s):find('Failed to initialize EIF reader: "Found invalid EIF section"', 1, true))
    fs.write(dir .. "/short.eif", src .. ("\0"):rep(8)) -- less than a section header: the reader stops there
    eq(run("describe-eif", "--eif-path", dir .. "/short.eif").exit_code, 0)
  end)
  it("a padded scenario EIF (e26's 537 MiB) is valid: the zeros are inside the customer ramdisk, not after it", function()
    local s = H.activate("e26-small-memory")
    local path = eif(s, "data-processing.eif")
    local info = assert(require("nd.eif").read(path, { measure = false })) -- the structure; describe-eif measures
    eq(info.file_size, 537 * 1048576)
    eq(info.trailing_bytes, 0)
    truthy(info.crc_ok)
    local last = info.sections[#info.sections]
    eq(last.name, "ramdisk")
    eq(last.offset + 12 + last.size, info.file_size) -- sections back to back up to the end of the file
    local r = run("describe-eif", "--eif-path", path)
    eq(r.exit_code, 0, r.stderr)
    local d = cjson.decode(r.stdout)
    eq(d.CheckCRC, true)
    match(d.Measurements.PCR0, "^%x+$")
    -- run-enclave takes the PCRs the simulator recorded (cached) when it wrote the file: the same as a fresh read
    eq(run("run-enclave", "--cpu-count", "2", "--memory", "3072", "--eif-path", path).exit_code, 0)
    local m = cjson.decode(run("describe-enclaves").stdout)[1].Measurements
    eq(m.PCR0, d.Measurements.PCR0)
    eq(m.PCR2, d.Measurements.PCR2)
    eq(assert(preflight.check{ eif = path, memory = 512, cpu_count = 2, host = false,
      allocator = { memory_mib = 4096, cpu_count = 2 } }).first.code, "E26")
  end)
  it("the simulator's EIFs carry nitro-cli's metadata: CustomMetadata, ImageVersion = image ID, no trailing bytes", function()
    local s = H.activate("healthy")
    local info = assert(require("nd.eif").read(eif(s, "hello-vsock.eif")))
    eq(info.trailing_bytes, 0)
    local raw = info.metadata_raw
    match(raw, '^{"ImageName":"hello%-enclave","ImageVersion":"%x+","BuildMetadata":{"BuildTime":')
    match(raw, ',"CustomMetadata":null}$')
    local d = cjson.decode(run("describe-eif", "--eif-path", eif(s, "hello-vsock.eif")).stdout)
    eq(d.Metadata.BuildTool, "nitro-cli")
    eq(d.Metadata.CustomMetadata, nil)
  end)
end)

describe("root messages of E35 (container) and E59 (expired certificate), from the source", function()
  -- the subactions of an err log, outermost first
  local function subactions(log)
    local out = {}
    for l in (log:match("Subactions:\n(.-)\n  Root error file") .. "\n"):gmatch("    ([^\n]*)\n") do out[#out + 1] = l end
    return out
  end
  it("E35: fill_from_file's message under write_eif_to_regions' chain (resource_manager.rs)", function()
    local s = H.activate("e35-container-no-hugepages")
    local r = run("run-enclave", "--cpu-count", "2", "--memory", "1024", "--eif-path", eif(s, "hello-vsock.eif"))
    eq(first_line(r.stderr), H.src("resource_manager", "start_alloc"))
    local logs = H.err_logs(s)
    local log = assert(fs.read(s:path("/var/log/nitro_enclaves/" .. logs[#logs - 1])))
    local sub = subactions(log)
    local want = { H.src("enclave_proc", "execute"):gsub("{cmd:%?}", "Run"), H.src("enclave_proc", "trigger"),
      H.src("commands", "run"), H.src("resource_manager", "create_enclave"), H.src("resource_manager", "mem_init"),
      H.src("resource_manager", "write_eif"), (H.src("resource_manager", "fill_region")) }
    for i, w in ipairs(want) do eq(sub[i], w) end
    -- the root: nitro-cli's prefix; what follows is the kernel's io::Error ({:?}), not nitro-cli's text
    local prefix = H.src("resource_manager", "read_image"):gsub("{e:%?}$", "")
    eq(sub[#want + 1]:sub(1, #prefix), prefix)
    eq(#sub, #want + 1)
    match(log, "Root error file: src/enclave_proc/resource_manager.rs\n  Root error line: 304\n") -- 1.4.2's line
  end)
  it("E59: commands.rs formats verify()'s String with {:?}; the expiry text is image-format's", function()
    local s = H.activate("e59-expired-certificate")
    local r = run("run-enclave", "--cpu-count", "2", "--memory", "1024", "--eif-path", eif(s, "signed-app.eif"))
    eq(first_line(r.stderr), block("E59"))
    local logs = H.err_logs(s)
    local sub = subactions(assert(fs.read(s:path("/var/log/nitro_enclaves/" .. logs[#logs - 1]))))
    local root = H.src("commands", "invalid_cert"):gsub("{e:%?}", string.format("%q", H.src("image_format", "cert_expired")))
    eq(sub[#sub], root)
    eq(root, 'Invalid signing certificate: "The signing certificate is expired"')
  end)
end)

describe("root error lines are where nitro-cli's new_nitro_cli_failure! stands (line!() of the invocation)", function()
  local function root_line(s)
    return tonumber(last_err_log(s):match("Root error line: (%d+)"))
  end
  -- the invocation is the line before the message in each of these (src/lib.rs, same in v1.4.2 and v1.5.0)
  it("E51: lib.rs artifacts_path()", function()
    local s = H.activate("e51-no-home")
    local r = run("build-enclave", "--docker-uri", "hello-enclave:vsock", "--output-file", spec.tmpdir() .. "/x.eif")
    eq(r.exit_code, 51)
    local _, where = H.src("lib", "artifacts_unset")
    eq(root_line(s), tonumber(where:match(":(%d+)$")) - 1)
  end)
  it("E50: lib.rs pull_docker_image()", function()
    local s = H.activate("e50-docker-api-too-new")
    local r = run("build-enclave", "--docker-uri", "hello-enclave:vsock", "--output-file", spec.tmpdir() .. "/x.eif")
    eq(r.exit_code, 50)
    local _, where = H.src("lib", "pull")
    eq(root_line(s), tonumber(where:match(":(%d+)$")) - 1)
  end)
  it("E19: lib.rs, the output file", function()
    local s = H.activate("healthy")
    local r = run("build-enclave", "--docker-uri", "hello-enclave:vsock", "--output-file", "/nonexistent-dir/x.eif")
    eq(r.exit_code, 19)
    local _, where = H.src("lib", "output_file")
    eq(root_line(s), tonumber(where:match(":(%d+)$")) - 1)
  end)
end)

describe("an enclave ID without a process (E11)", function()
  it("terminate-enclave: enclave_proc_connect_to_single's words and line", function()
    local s = H.activate("healthy")
    local r = run("terminate-enclave", "--enclave-id", "i-0123456789abcdef0-enc18c0ffee0000000")
    eq(r.exit_code, 11)
    local log = last_err_log(s)
    local text, where = H.src("enclave_proc_comm", "connect_single")
    local root = text:gsub("{e:%?}", 'Os { code: 2, kind: NotFound, message: "No such file or directory" }')
    truthy(log:find("\n    Failed to connect to enclave process\n    " .. root .. "\n", 1, true), log)
    eq(tonumber(log:match("Root error line: (%d+)")), tonumber(where:match(":(%d+)$")) - 1)
  end)
end)
