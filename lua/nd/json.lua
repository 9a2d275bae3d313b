-- nd.json — JSON for results and stand-ins: decode is lua-cjson's (cjson.safe); encode is ours because nitrodiag needs
-- what Debian's lua-cjson lacks: empty arrays that stay arrays, stable key order (sorted, or an explicit order for
-- outputs that must match another program byte for byte), and 2-space pretty printing like nitro-cli's.
--
--   json.encode(v [, { indent = 2 }])      -> string
--   json.decode(s)                         -> value | nil, msg
--   json.array(t)                          -> t, marked as an array (encodes [] when empty)
--   json.ordered(t, {"k1", "k2", …})       -> t, whose keys encode in that order (others follow, sorted)
--   json.null                              -> the JSON null sentinel (cjson.null)
local cjson = require "cjson"
local safe = require "cjson.safe"

local M = { null = cjson.null }

local ARRAY = { __jsontype = "array" }

function M.array(t)
  t = t or {}
  local mt = getmetatable(t)
  if mt == nil then return setmetatable(t, ARRAY) end
  mt.__jsontype = "array"
  return t
end

function M.ordered(t, keys)
  local mt = getmetatable(t) or {}
  mt.__jsonorder = keys
  return setmetatable(t, mt)
end

function M.decode(s)
  if type(s) ~= "string" then return nil, "json: expected a string" end
  local v, err = safe.decode(s)
  if v == nil and err then return nil, "json: " .. err end
  return v
end

local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f', ['\n'] = '\\n', ['\r'] = '\\r',
                  ['\t'] = '\\t' }
-- JSON text is UTF-8 (RFC 8259 §8.1): a byte that is not part of valid UTF-8 (Latin-1 in a log line, garbage from a
-- command) becomes U+FFFD, so --json output always parses; valid text is left as it is
local function valid_utf8(s)
  if utf8.len(s) then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local len, bad = utf8.len(s, i)
    if len then out[#out + 1] = s:sub(i) break end
    out[#out + 1] = s:sub(i, bad - 1)
    out[#out + 1] = "\u{FFFD}"
    i = bad + 1
  end
  return table.concat(out)
end

local function quote(s)
  s = valid_utf8(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function is_array(t)
  local mt = getmetatable(t)
  if mt and mt.__jsontype == "array" then return true end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
    count = count + 1
  end
  return count == n
end

local function encode(v, indent, depth, out, seen)
  local tv = type(v)
  if v == nil or v == cjson.null then
    out[#out + 1] = "null"
  elseif tv == "boolean" then
    out[#out + 1] = tostring(v)
  elseif tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      out[#out + 1] = "null"
    elseif math.type(v) == "integer" then
      out[#out + 1] = tostring(v)
    elseif v == math.floor(v) and math.abs(v) < 2^53 then
      out[#out + 1] = string.format("%d", v)
    else
      out[#out + 1] = string.format("%.14g", v)
    end
  elseif tv == "string" then
    out[#out + 1] = quote(v)
  elseif tv == "table" then
    if seen[v] then error("json: cannot encode a table that contains itself", 0) end
    seen[v] = true
    local nl = indent and ("\n" .. string.rep(" ", indent * (depth + 1))) or ""
    local close_nl = indent and ("\n" .. string.rep(" ", indent * depth)) or ""
    local colon = indent and ": " or ":"
    if is_array(v) then
      if #v == 0 then
        out[#out + 1] = "[]"
      else
        out[#out + 1] = "["
        for i = 1, #v do
          if i > 1 then out[#out + 1] = "," end
          out[#out + 1] = nl
          encode(v[i], indent, depth + 1, out, seen)
        end
        out[#out + 1] = close_nl .. "]"
      end
    else
      local keys, listed = {}, {}
      local mt = getmetatable(v)
      if mt and mt.__jsonorder then
        for _, k in ipairs(mt.__jsonorder) do
          if v[k] ~= nil then keys[#keys + 1] = k listed[k] = true end
        end
      end
      local rest = {}
      for k in pairs(v) do
        if not listed[k] then rest[#rest + 1] = tostring(k) end
      end
      table.sort(rest)
      for _, k in ipairs(rest) do keys[#keys + 1] = k end
      if #keys == 0 then
        out[#out + 1] = "{}"
      else
        out[#out + 1] = "{"
        for i, k in ipairs(keys) do
          if i > 1 then out[#out + 1] = "," end
          out[#out + 1] = nl .. quote(k) .. colon
          local val = v[k]
          if val == nil then val = v[tonumber(k)] end
          encode(val, indent, depth + 1, out, seen)
        end
        out[#out + 1] = close_nl .. "}"
      end
    end
    seen[v] = nil
  else
    out[#out + 1] = quote(tostring(v))
  end
end

function M.encode(v, opts)
  local out = {}
  encode(v, opts and opts.indent or nil, 0, out, {})
  return table.concat(out)
end

return M
