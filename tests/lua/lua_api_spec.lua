-- docs/lua-api.md is kept true: every public built-in module has a "## nd.<name>" section, every function of the
-- module table is documented there as `short.fn(`, and every `short.fn(` documented there exists.
local fs = require "nd.fs"

local doc = assert(fs.read(spec.source_dir .. "/docs/lua-api.md"))

local internal = {}
local line = doc:match("Internal modules[^\n]*:([^\n]*)")
for name in (line or ""):gmatch("nd[%w%._]+") do internal[name:gsub("%.$", "")] = true end

local sections, current = {}, nil
for l in (doc .. "\n"):gmatch("([^\n]*)\n") do
  local name = l:match("^## (nd[%w%._]*)")
  if name then current = name sections[name] = ""
  elseif l:match("^## ") then current = nil
  elseif current then sections[current] = sections[current] .. l .. "\n" end
end

local function public_modules()
  local out = {}
  for _, n in ipairs(debug.getregistry()["nd.builtin_modules"]()) do
    if not internal[n] and not n:match("^nd%.sim%.") and not n:match("^nd%.rules%.") then out[#out + 1] = n end
  end
  table.sort(out)
  return out
end

describe("docs/lua-api.md", function()
  it("lists internal modules", function() truthy(next(internal), "no 'Internal modules' line") end)
  for _, name in ipairs(public_modules()) do
    it("documents " .. name .. " exactly", function()
      local body = sections[name]
      truthy(body, "no section '## " .. name .. "'")
      local mod = require(name)
      local short = name:match("([%w_]+)$")
      local undocumented, missing = {}, {}
      if type(mod) == "table" then
        for k, v in pairs(mod) do
          if type(v) == "function" and type(k) == "string" and not k:match("^_") then
            if not body:find("`" .. short .. "." .. k .. "(", 1, true) then undocumented[#undocumented + 1] = k end
          end
        end
      end
      for fn in body:gmatch("`" .. short .. "%.([%w_]+)%(") do
        if type(mod) ~= "table" or type(rawget(mod, fn) or mod[fn]) ~= "function" then missing[#missing + 1] = fn end
      end
      table.sort(undocumented)
      eq(undocumented, {}, name .. ": functions without documentation")
      eq(missing, {}, name .. ": documented functions that do not exist")
    end)
  end
end)
