-- nd.pretty — readable rendering of Lua values for the REPL and runbook authors: tables sorted and indented,
-- sequences inline when short, cycles shown as <cycle>, depth and width bounded.
local M = {}

local function is_ident(k) return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil end

local function render(v, indent, depth, seen, out, opts)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = string.format("%q", v):gsub("\\\n", "\\n")
  elseif t ~= "table" then
    out[#out + 1] = tostring(v)
  elseif seen[v] then
    out[#out + 1] = "<cycle>"
  elseif depth >= opts.max_depth then
    out[#out + 1] = "{…}"
  else
    seen[v] = true
    local mt = getmetatable(v)
    if mt and mt.__tostring then
      out[#out + 1] = tostring(v)
      seen[v] = nil
      return
    end
    local keys, n = {}, #v
    for k in pairs(v) do
      if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
    end
    table.sort(keys, function(a, b)
      if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then return a < b end
      return type(a) < type(b)
    end)
    if n + #keys == 0 then out[#out + 1] = "{}" seen[v] = nil return end
    local pad = string.rep("  ", indent + 1)
    out[#out + 1] = "{\n"
    local shown = 0
    for i = 1, n do
      shown = shown + 1
      if shown > opts.max_items then out[#out + 1] = pad .. "…\n" break end
      out[#out + 1] = pad
      render(v[i], indent + 1, depth + 1, seen, out, opts)
      out[#out + 1] = ",\n"
    end
    for _, k in ipairs(keys) do
      shown = shown + 1
      if shown > opts.max_items then out[#out + 1] = pad .. "…\n" break end
      out[#out + 1] = pad .. (is_ident(k) and k or ("[" .. (type(k) == "string" and string.format("%q", k) or tostring(k)) .. "]")) .. " = "
      render(v[k], indent + 1, depth + 1, seen, out, opts)
      out[#out + 1] = ",\n"
    end
    out[#out + 1] = string.rep("  ", indent) .. "}"
    seen[v] = nil
  end
end

-- number(v) -> "-" for nil, whole numbers without decimals, others with one ("12", "3.5")
function M.number(v)
  if v == nil then return "-" end
  if math.type(v) == "integer" or (v == math.floor(v) and math.abs(v) < 1e15) then
    return string.format("%d", math.floor(v))
  end
  return string.format("%.1f", v)
end

-- format(value [, {max_depth = 6, max_items = 200}]) -> string
function M.format(v, opts)
  opts = opts or {}
  opts.max_depth = opts.max_depth or 6
  opts.max_items = opts.max_items or 200
  local out = {}
  render(v, 0, 0, {}, out, opts)
  return table.concat(out)
end

return M
