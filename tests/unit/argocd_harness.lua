-- Runs one of integrations/argocd's scripts the way Argo CD does, and prints what it returns as
-- JSON on one line.
--
--   lua5.4 argocd_harness.lua SCRIPT < OBJECT
--
-- OBJECT is a Lua chunk that returns the Kubernetes object; the script sees it as the global `obj`.
-- As in Argo CD, the script gets the base functions and `table` only: no `string`, `math`, `io`
-- (and no string methods), so a script that would fail in Argo CD fails here too.

local format, gsub, byte = string.format, string.gsub, string.byte
local concat, sort = table.concat, table.sort
local integer_type, floor, huge = math.type, math.floor, math.huge

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function encode_string(text)
  local escaped = gsub(text, '[%c"\\]', function(char)
    return escapes[char] or format("\\u%04x", byte(char))
  end)
  return '"' .. escaped .. '"'
end

-- As Argo CD's encoder (gopher-json): an empty table is an empty array, a table with keys 1..n an
-- array, any other a JSON object, which must have string keys only.
local function encode(value)
  local kind = type(value)
  if kind == "nil" then
    return "null"
  elseif kind == "boolean" then
    return value and "true" or "false"
  elseif kind == "number" then
    if integer_type(value) == "integer" then
      return format("%d", value)
    elseif value ~= value or value == huge or value == -huge then
      error("not a JSON number: " .. tostring(value))
    elseif value == floor(value) and value > -2 ^ 53 and value < 2 ^ 53 then
      return format("%d", value)
    end
    return format("%.17g", value)
  elseif kind == "string" then
    return encode_string(value)
  elseif kind ~= "table" then
    error("cannot encode a " .. kind)
  end
  local count = 0
  for _ in pairs(value) do
    count = count + 1
  end
  if count == 0 then
    return "[]"
  end
  local length = #value
  if length == count then
    local items = {}
    for index = 1, length do
      if value[index] == nil then
        error("an array with a hole")
      end
      items[index] = encode(value[index])
    end
    return "[" .. concat(items, ",") .. "]"
  end
  local keys = {}
  for key in pairs(value) do
    if type(key) ~= "string" then
      error("a table with both string and other keys: " .. tostring(key))
    end
    keys[#keys + 1] = key
  end
  sort(keys)
  local members = {}
  for index, key in ipairs(keys) do
    members[index] = encode_string(key) .. ":" .. encode(value[key])
  end
  return "{" .. concat(members, ",") .. "}"
end

local script_path = assert(arg[1], "usage: lua5.4 argocd_harness.lua SCRIPT < OBJECT")
local object = assert(load(io.read("a"), "=object", "t", {}))()
local file = assert(io.open(script_path, "rb"))
local source = file:read("a")
file:close()

local environment = {
  assert = assert,
  error = error,
  getmetatable = getmetatable,
  ipairs = ipairs,
  next = next,
  pairs = pairs,
  pcall = pcall,
  rawequal = rawequal,
  rawget = rawget,
  rawset = rawset,
  select = select,
  setmetatable = setmetatable,
  tonumber = tonumber,
  tostring = tostring,
  type = type,
  unpack = table.unpack,
  xpcall = xpcall,
  table = { concat = table.concat, insert = table.insert, remove = table.remove, sort = table.sort },
  -- Argo CD's own safe subset of `os`.
  os = { date = os.date, time = os.time },
  obj = object,
}
environment._G = environment

local chunk, problem = load(source, "@" .. script_path, "t", environment)
if chunk == nil then
  io.stderr:write(problem, "\n")
  os.exit(2)
end
-- Without Argo CD's string library, strings have no methods either.
local string_methods = getmetatable("").__index
getmetatable("").__index = nil
local ok, result = pcall(chunk)
getmetatable("").__index = string_methods
if not ok then
  io.stderr:write(tostring(result), "\n")
  os.exit(1)
end
io.write(encode(result), "\n")
