-- nd.json's encoder (lua/nd/json.lua): its output is always JSON that an independent parser (python3's json, which
-- rejects invalid UTF-8 in its input bytes) reads back; text that is not UTF-8 is replaced, never passed through.
local json = require "nd.json"
local proc = require "nd.proc"

-- python3 reads the bytes as UTF-8 strictly and prints what it decoded as JSON with \u escapes only
local function python_roundtrip(text)
  local r = assert(proc.run{ "python3", "-c",
    "import sys,json; d=json.loads(sys.stdin.buffer.read().decode('utf-8')); print(json.dumps(d, sort_keys=True))",
    stdin = text, timeout = 30 })
  return r.exit_code == 0 and r.stdout or nil, r.stderr
end

describe("nd.json encode", function()
  it("replaces bytes that are not UTF-8 by U+FFFD, keeps valid UTF-8 and escapes controls", function()
    local v = { latin1 = "caf\xe9 au lait", cut = "\xe2\x82", lone = "\x80x", ok = "Привет ✓ 😀",
                ctl = "a\0b\127c\"\\", [ "k\xff" ] = "key too" }
    local text = json.encode(v)
    eq(utf8.len(text) ~= nil, true, "the encoded text is UTF-8")
    local back = assert(json.decode(text))
    eq(back.latin1, "caf\u{FFFD} au lait")
    eq(back.cut, "\u{FFFD}\u{FFFD}")
    eq(back.lone, "\u{FFFD}x")
    eq(back.ok, "Привет ✓ 😀")
    eq(back.ctl, "a\0b\127c\"\\")
    eq(back["k\u{FFFD}"], "key too")
    local py, err = python_roundtrip(text)
    truthy(py, "python3 reads it: " .. tostring(err))
    match(py, '"latin1": "caf\\ufffd au lait"')
    match(py, '"ok": "\\u041f\\u0440\\u0438\\u0432\\u0435\\u0442 \\u2713 \\ud83d\\ude00"')
  end)

  it("random bytes always give JSON that python3 accepts", function()
    local seed = 12345
    local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648 return seed % n end
    local items = {}
    for i = 1, 200 do
      local b = {}
      for j = 1, rnd(24) do b[j] = string.char(rnd(256)) end
      items[i] = table.concat(b)
    end
    local text = json.encode(json.array(items))
    truthy(utf8.len(text), "UTF-8")
    local py, err = python_roundtrip(text)
    truthy(py, "python3 reads it: " .. tostring(err))
    eq(#assert(json.decode(text)), 200)
  end)
end)
