-- The simulated nitro-enclaves-allocator against the real script (bootstrap/nitro-enclaves-allocator, v1.5.0;
-- strings from tests/fixtures/nitro-cli-source/strings.lua with their lines). The parse results below were obtained
-- by running the script's own parse_config function under bash on these exact files (2026-12-06):
--   CRLF file                     -> "Error: Config error: missing memory reservation (`memory_mib`)."
--   blank line after ---          -> "Error: Error in <file>:2 - unexpected: " (bash: "CONFIG: bad array subscript")
--   "memory_mib: 512 # note: 4GiB later" -> memory_mib = "4GiB later" (everything after the last ':')
--   "cpu_count: 2 # two"          -> cpu_count = "2 # two"
local H = dofile(spec.source_dir .. "/tests/sim/helpers.lua")
local fs = require "nd.fs"

after_each(H.close_all)

local FILE = "/etc/nitro_enclaves/allocator.yaml"
local function alloc(n) return (H.src("allocator", "L" .. n)) end
local function restart(s, yaml)
  H.run({ "systemctl", "stop", "nitro-enclaves-allocator.service" })
  fs.write(s:path(FILE), yaml)
  local r = H.run({ "systemctl", "start", "nitro-enclaves-allocator.service" })
  local j = H.run({ "journalctl", "-u", "nitro-enclaves-allocator.service", "-o", "cat" }).stdout
  return r, j
end
local function lines_after_last_start(j)
  local out, keep = {}, false
  for l in j:gmatch("[^\n]+") do
    if l == "Starting Nitro Enclaves Resource Allocator..." then out, keep = {}, true
    elseif keep then out[#out + 1] = l end
  end
  return out
end

describe("allocator.yaml as the real script parses it", function()
  it("CRLF: nothing after '---\\r' is read", function()
    local s = H.activate("healthy")
    local r, j = restart(s, "---\r\nmemory_mib: 512\r\ncpu_count: 2\r\n")
    eq(r.exit_code, 1)
    eq(lines_after_last_start(j)[1], "Error: " .. alloc(126))
  end)
  it("a blank line after '---' is an unexpected empty key", function()
    local s = H.activate("healthy")
    local r, j = restart(s, "---\n\nmemory_mib: 512\ncpu_count: 2\n")
    eq(r.exit_code, 1)
    eq(lines_after_last_start(j)[1], "Error: " .. alloc(115):gsub("%$CONFIG_FILE_PATH", FILE):gsub("%$count", "2"):gsub("%$key", ""))
  end)
  it("an inline comment with ':' replaces the value", function()
    local s = H.activate("healthy")
    local r, j = restart(s, "---\nmemory_mib: 512 # note: 4GiB later\ncpu_count: 2\n")
    eq(r.exit_code, 1)
    local l = lines_after_last_start(j)
    eq(l[#l - 3], "Error: " .. alloc(354):gsub("%$needed_mem", "4GiB later"))
    r, j = restart(s, "---\nmemory_mib: 512\ncpu_count: 2 # two\n")
    eq(r.exit_code, 1)
    l = lines_after_last_start(j)
    eq(l[2], "Error: " .. alloc(431):gsub("%$cpu_pool_count", "2 # two"))
  end)
end)

describe("the allocator's journal", function()
  it("cpu_count: the script's lines in its order, 1 GiB pages first", function()
    local s = H.activate("healthy")
    local r, j = restart(s, "---\nmemory_mib: 2048\ncpu_count: 2\n")
    eq(r.exit_code, 0, j)
    local l = lines_after_last_start(j)
    eq(l, { alloc(409), (alloc(516):gsub("%$memory_request", "2048"):gsub("%$numa_node", "0")), alloc(349),
      (alloc(307):gsub("%$actual_num_pages", "2"):gsub("%$page_key", "1048576kB")), alloc(366),
      (alloc(546):gsub("%$cpu_pool", "1,3")), alloc(149), alloc(151),
      (alloc(571):gsub("%${CONFIG%[memory_mib%]}", "2048"):gsub("%$cpu_msg", "2 CPUs")),
      "Finished Nitro Enclaves Resource Allocator." })
  end)
  it("cpu_pool: the pool first, then the memory; 'CPU pool: 1,3' in the final line", function()
    local s = H.activate("healthy")
    local r, j = restart(s, "---\nmemory_mib: 512\ncpu_pool: 1,3\n")
    eq(r.exit_code, 0, j)
    local l = lines_after_last_start(j)
    eq(l, { alloc(149), alloc(151), alloc(349), (alloc(307):gsub("%$actual_num_pages", "256"):gsub("%$page_key", "2048kB")),
      alloc(366), (alloc(571):gsub("%${CONFIG%[memory_mib%]}", "512"):gsub("%$cpu_msg", "CPU pool: 1,3")),
      "Finished Nitro Enclaves Resource Allocator." })
  end)
  it("not enough memory on the node: the script's rollback and Error line", function()
    local dir = spec.tmpdir()
    fs.write(dir .. "/short.lua", 'return { extends = "healthy", description = "short node", host = { numa_free_mib = 1024 } }')
    local s = H.activate(dir .. "/short.lua")
    local r, j = restart(s, "---\nmemory_mib: 2048\ncpu_count: 2\n")
    eq(r.exit_code, 1)
    local l = lines_after_last_start(j)
    eq(l[5], alloc(319))
    eq(l[6], "Error: " .. alloc(83))
    -- the 2021 script reported success anyway (fixed by aws-nitro-enclaves-cli PR #315)
    local s2 = H.activate("allocator-numa-partial")
    match(H.run({ "journalctl", "-u", "nitro-enclaves-allocator.service", "-o", "cat" }).stdout,
      "Successfully allocated Nitro Enclaves resources: 4096 MiB, 2 CPUs\n")
    eq(fs.read(s2:path("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages")), "1\n")
  end)
end)
