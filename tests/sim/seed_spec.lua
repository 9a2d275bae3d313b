-- The two failures quoted in the Nitro Enclaves workshop's troubleshooting page (seed 001, Japanese) are reproduced
-- by the simulated host byte for byte, timestamps aside, and parse back into the right root cause.
local H = dofile(spec.source_dir .. "/tests/sim/helpers.lua")
local fs = require "nd.fs"

after_each(H.close_all)

local function run_seed(scenario, memory)
  local s = H.activate(scenario)
  local r = H.run({ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", tostring(memory), "--eif-path",
    "./data-processing.eif", cwd = s:path("/home/ec2-user") })
  return s, r
end

describe("seed: E26 with --memory 512", function()
  it("prints exactly the seed's two blocks and exits 39", function()
    local s, r = run_seed("e26-small-memory", 512)
    eq(r.exit_code, 39)
    eq(r.stdout, "")
    local want = H.seed_output(1)
    truthy(want, "seed text available")
    eq(H.untime(r.stderr:gsub("%s+$", "")), H.untime(want))
    -- no allocation happened before the 4x rule
    falsy(r.stderr:find("Start allocating memory", 1, true))
    -- both err logs exist under the root, named as printed, with the backtrace content
    local logs = H.err_logs(s)
    eq(#logs, 2)
    for path in r.stderr:gmatch('error log found at "([^"]+)"') do
      local content = assert(fs.read(s:path(path)), "err log " .. path)
      match(content, "^  Action: Run Enclave\n  Subactions:\n")
      match(content, "\n  Root error file: src/[%w_/]+%.rs\n  Root error line: %d+\n  Version: %d+%.%d+%.%d+$")
    end
    local a, b = r.stderr:match('err(%d%d%d%d%-.-)%.log".-err(%d%d%d%d%-.-)%.log"')
    truthy(a < b, "the E39 log is written after the E26 log")
  end)
  it("is the same failure on the E27 host (512 MiB allocator), before allocation", function()
    local _, r = run_seed("e27-allocator-too-small", 512)
    eq(r.exit_code, 39)
    eq(H.untime(r.stderr:gsub("%s+$", "")), H.untime(H.seed_output(1)))
  end)
  it("parses back into E26 as the root cause with E39 secondary", function()
    local p = require "nd.nitro"
    local _, r = run_seed("e26-small-memory", 512)
    local res = p.parse_errors(r.stderr)
    truthy(res.recognised)
    eq(res.blocks[1].code, "E26")
    truthy(res.blocks[1].root_cause)
    eq(res.blocks[1].facts.memory_mib, 512)
    eq(res.blocks[1].facts.min_memory_mib, 2148)
    eq(res.blocks[2].code, "E39")
    truthy(res.blocks[2].secondary)
    eq(res.failed_connections, 1)
  end)
end)

describe("seed: E27 with --memory 3072", function()
  it("prints the seed's output (with 1.4/1.5's 'restart' for the seed's 2021 'enable') and exits 39", function()
    local s, r = run_seed("e27-allocator-too-small", 3072)
    eq(r.exit_code, 39)
    eq(r.stdout, "")
    -- the seed page quotes nitro-cli before 1.2.3; E27's second sentence says "restart" since (document_errors.rs:231)
    local tail = "and then enable the nitro-enclaves-allocator.service."
    local now = H.src("detailed", "E27"):match("and then %S+ the nitro%-enclaves%-allocator%.service%.$")
    eq(now, "and then restart the nitro-enclaves-allocator.service.")
    local seed = H.seed_output(2)
    truthy(seed:find(tail, 1, true), "the seed has the old wording")
    eq(H.untime(r.stderr:gsub("%s+$", "")), H.untime((seed:gsub(tail:gsub("%p", "%%%0"), now))))
    eq(#H.err_logs(s), 2)
  end)
  it("parses back into E27 as the root cause", function()
    local p = require "nd.nitro"
    local s, r = run_seed("e27-allocator-too-small", 3072)
    local res = p.parse_errors(r.stderr)
    eq(res.blocks[1].code, "E27")
    eq(res.blocks[1].facts.memory_mib, 3072)
    eq(res.failed_connections, 1)
    -- the err logs the blocks point at parse too
    for _, b in ipairs(res.blocks) do
      local log = p.parse_err_log(assert(fs.read(s:path(b.err_log_path))))
      truthy(log.recognised, b.err_log_path)
      eq(log.action, "Run Enclave")
      eq(log.version, "1.4.2")
    end
    truthy(res.blocks[1].root_cause)
    eq(res.blocks[2].code, "E39")
    truthy(res.blocks[2].secondary)
  end)
  it("succeeds once the allocator holds enough memory (edit + restart, as in the workshop)", function()
    local s = H.activate("e27-allocator-too-small")
    local yaml = s:path("/etc/nitro_enclaves/allocator.yaml")
    eq(H.run({ "systemctl", "stop", "nitro-enclaves-allocator.service" }).exit_code, 0)
    assert(fs.write(yaml, (assert(fs.read(yaml)):gsub("memory_mib: 512", "memory_mib: 4096"))))
    local r = H.run({ "systemctl", "start", "nitro-enclaves-allocator.service" })
    eq(r.exit_code, 0)
    r = H.run({ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "3072", "--eif-path",
      s:path("/home/ec2-user/data-processing.eif") })
    eq(r.exit_code, 0, r.stderr)
    match(r.stderr, "^Start allocating memory...\nStarted enclave with enclave%-cid: 16, memory: 3072 MiB, cpu%-ids: %[1, 3%]\n$")
  end)
end)

describe("explain", function()
  it("prints the seed's text for E26", function()
    H.activate("healthy")
    local r = H.run({ "nitro-cli", "explain", "--error-code", "E26" })
    eq(r.exit_code, 0)
    local page = fs.read(spec.source_dir .. "/tests/nitro/fixtures/seed_explain_e26.txt")
      or [[Insufficient memory requested. Such error appears when the user requests to launch an enclave with not enough memory. The enclave memory should be at least equal to the size of the EIF file used for launching the enclave.
        Example: (EIF file size: 11MB) `nitro-cli run-enclave --cpu-count 2 --memory 5 --eif-path /path/to/my/eif`. In this case, the user requested to run an enclave with only 5MB of memory, whereas the EIF file alone requires 11MB.]]
    -- the page shows the tab as spaces
    eq((r.stderr:gsub("\t", "        "):gsub("%s+$", "")), (page:gsub("\t", "        "):gsub("%s+$", "")))
  end)
  it("answers E57 honestly", function()
    H.activate("healthy")
    eq(H.run({ "nitro-cli", "explain", "--error-code", "E57" }).stderr, "No such error code E57\n")
  end)
end)
