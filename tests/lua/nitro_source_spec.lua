-- The knowledge base against nitro-cli's own source: every `[ Exx ]` text (get_detailed_info) and every `nitro-cli
-- explain` text (explain_error) of aws-nitro-enclaves-cli v1.5.0, as extracted with file and line into
-- tests/fixtures/nitro-cli-source/strings.lua (1.4.2 prints the same texts: only format-string syntax changed).
local kb = require "nd.nitro_errors"

local SRC = dofile(spec.source_dir .. "/tests/fixtures/nitro-cli-source/strings.lua")
local function entries(kind)
  local out = {}
  for _, e in ipairs(SRC) do
    if e[1] == kind then out[e[2]] = { file = e[3], line = e[4], text = e[5] } end
  end
  return out
end
local DETAILED, EXPLAIN = entries("detailed"), entries("explain")
-- get_detailed_info's `format!` with additional info, filled the way nitro-cli fills it (independent of kb.detailed)
local function fill(tpl, info)
  local i = 0
  return (tpl:gsub("{}", function() i = i + 1 return info[i] or "MISSING_INFO" end))
end

describe("nd.nitro_errors against nitro-cli's source", function()
  it("has every block text of get_detailed_info, byte for byte", function()
    local n = 0
    for code, e in pairs(DETAILED) do
      if code:match("^E%d%d$") then
        n = n + 1
        eq(kb.DETAILED[code], e.text, code .. " (" .. e.file .. ":" .. e.line .. ")")
      end
    end
    eq(n, 61)
    eq(kb.DETAILED.E19_2, DETAILED["E19.2"].text)
    eq(kb.DETAILED.E26_2, DETAILED["E26.2"].text)
  end)
  it("fills the blocks the way get_detailed_info does (MISSING_INFO, E19's file line, E26 with 2 or 3 values)", function()
    eq(kb.detailed("E26", { "memory", 512, 2148 }), "[ E26 ] " .. fill(DETAILED.E26.text, { "memory", "512", "2148" }))
    eq(kb.detailed("E26", { "memory", 0 }), "[ E26 ] " .. fill(DETAILED["E26.2"].text, { "memory", "0" }))
    eq(kb.detailed("E19", { "/dev/nitro_enclaves", "Open" }),
      "[ E19 ] " .. DETAILED.E19.text .. fill(DETAILED["E19.2"].text, { "/dev/nitro_enclaves", "Open" }))
    eq(kb.detailed("E19"), "[ E19 ] " .. DETAILED.E19.text)
    -- the well-known-CID failure carries no info: nitro-cli prints the placeholders
    eq(kb.detailed("E03"), "[ E03 ] " .. fill(DETAILED.E03.text, {}))
    match(kb.detailed("E03"), "`MISSING_INFO` is not a valid integer %(`MISSING_INFO`%)")
    eq(kb.detailed("E61"), "[ E61 ] " .. DETAILED.unknown.text:gsub("{error_code_str}", "E61"))
  end)
  it("E27 says restart (nitro-cli >= 1.2.3), E21/E22 still say enable", function()
    match(DETAILED.E27.text, "and then restart the nitro%-enclaves%-allocator%.service%.$")
    eq(kb.detailed("E27", { "memory", 3072 }), "[ E27 ] " .. fill(DETAILED.E27.text, { "memory", "3072" }))
    match(kb.detailed("E22", { "cpu-count", 4 }), "and then enable the nitro%-enclaves%-allocator%.service%.$")
  end)
  it("E57-E60 blocks carry their real titles", function()
    for _, c in ipairs({ "E57", "E58", "E59", "E60" }) do
      eq(kb.detailed(c), "[ " .. c .. " ] " .. DETAILED[c].text)
      eq(kb.get(c).title, DETAILED[c].text:match("^(.-)%."), c)
    end
  end)
  it("has every explain text; E57-E59 are unknown to explain, E60 has one", function()
    for i = 0, 60 do
      local c = string.format("E%02d", i)
      local want = EXPLAIN[c] and EXPLAIN[c].text or EXPLAIN.unknown.text:gsub("{error_code_str}", c)
      eq(kb.explain_text(c), want, c)
    end
    truthy(EXPLAIN.E60, "E60 explain")
    for _, c in ipairs({ "E57", "E58", "E59" }) do falsy(EXPLAIN[c], c) end
  end)
  it("every title is the first sentence of nitro-cli's block text", function()
    for i = 0, 60 do
      local c = string.format("E%02d", i)
      eq(kb.get(c).title, DETAILED[c].text:match("^(.-)%. "), c)
    end
  end)
end)

describe("describe-eif's Metadata as nitro-cli prints it (src/common/json_output.rs MetadataDescribeInfo)", function()
  it("flattens CustomMetadata's keys into Metadata, after the build fields and DockerInfo", function()
    local eif = require "nd.eif"
    local fs = require "nd.fs"
    local dir = spec.tmpdir()
    local meta = '{"ImageName":"app","ImageVersion":"abc","BuildMetadata":{"BuildTime":"t","BuildTool":"nitro-cli",'
      .. '"BuildToolVersion":"1.5.0","OperatingSystem":"Linux","KernelVersion":"4.14"},"DockerInfo":{"Id":"x"},'
      .. '"CustomMetadata":{"team":"payments","build":7}}'
    assert(eif.write(dir .. "/c.eif", { kernel = "k", cmdline = "c", ramdisks = { "a", "b" }, metadata = meta }))
    local text = assert(eif.describe(dir .. "/c.eif"))
    local m = text:match('"Metadata": (%b{})')
    truthy(m, text)
    falsy(m:find("CustomMetadata", 1, true))
    local order = {}
    for k in m:gmatch('\n    "(%w+)":') do order[#order + 1] = k end
    eq(order, { "BuildTime", "BuildTool", "BuildToolVersion", "OperatingSystem", "KernelVersion", "DockerInfo", "team", "build" })
    -- null custom metadata adds nothing
    assert(eif.write(dir .. "/n.eif", { kernel = "k", cmdline = "c", ramdisks = { "a", "b" },
      metadata = (meta:gsub('"CustomMetadata":%b{}', '"CustomMetadata":null')) }))
    local n = assert(eif.describe(dir .. "/n.eif")):match('"Metadata": (%b{})')
    falsy(n:find('"team"', 1, true))
    local _ = fs
  end)
end)
