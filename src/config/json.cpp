#include "metalm/config/json.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "fields.hpp"
#include "metalm/core/atomic_file.hpp"

namespace metalm {
namespace detail {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string closest(const std::string& key, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_d = std::max<std::size_t>(2, key.size() / 3) + 1;
  for (const auto& c : candidates) {
    const std::size_t d = edit_distance(key, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

}  // namespace detail

namespace {

using nlohmann::json;

std::string json_type(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "bool";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "int";
    case json::value_t::number_float: return "float";
    case json::value_t::string: return "string";
    case json::value_t::array: return "list";
    case json::value_t::object: return "object";
    default: return "unknown";
  }
}

[[noreturn]] void wrong_type(const std::string& path, const std::string& expected, const json& j) {
  throw ConfigError(path + ": expected " + expected + ", found " + json_type(j) + " " + j.dump());
}

void read_value(const json& j, bool& out, const std::string& path) {
  if (!j.is_boolean()) wrong_type(path, "bool", j);
  out = j.get<bool>();
}

void read_value(const json& j, int64_t& out, const std::string& path) {
  if (j.is_number_integer()) {
    out = j.get<int64_t>();
  } else if (j.is_number_float() && std::isfinite(j.get<double>()) &&
             j.get<double>() == std::floor(j.get<double>()) && std::fabs(j.get<double>()) < 9e15) {
    out = static_cast<int64_t>(j.get<double>());  // 1e3 is a fine way to write 1000
  } else {
    wrong_type(path, "int", j);
  }
}

void read_value(const json& j, double& out, const std::string& path) {
  if (!j.is_number()) wrong_type(path, "float", j);
  out = j.get<double>();
}

void read_value(const json& j, std::string& out, const std::string& path) {
  if (!j.is_string()) wrong_type(path, "string", j);
  out = j.get<std::string>();
}

void read_value(const json& j, std::vector<int64_t>& out, const std::string& path) {
  if (!j.is_array()) wrong_type(path, "list of int", j);
  out.clear();
  for (std::size_t i = 0; i < j.size(); ++i) {
    int64_t v = 0;
    read_value(j[i], v, path + "[" + std::to_string(i) + "]");
    out.push_back(v);
  }
}

template <class E, std::enable_if_t<detail::is_enum_table<E>::value, int> = 0>
void read_value(const json& j, E& out, const std::string& path) {
  if (!j.is_string()) wrong_type(path, "one of " + detail::enum_choices<E>(), j);
  out = detail::enum_parse<E>(j.get<std::string>(), path);
}

// Reads the keys of one section; keys that are not fields are errors.
template <class S>
void read_section(const json& j, S& section, const std::string& prefix, const std::string& origin);

struct Reader {
  const json& object;
  std::string prefix;
  std::string origin;
  std::vector<std::string> known;

  template <class T>
  void operator()(const char* key, T& field, const char*) {
    known.emplace_back(key);
    const auto it = object.find(key);
    if (it == object.end()) return;
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    if constexpr (detail::is_section<T>::value) {
      read_section(*it, field, path, origin);
    } else {
      read_value(*it, field, path);
    }
  }
};

template <class S>
void read_section(const json& j, S& section, const std::string& prefix, const std::string& origin) {
  if (!j.is_object()) wrong_type(prefix.empty() ? "config" : prefix, "object", j);
  Reader reader{j, prefix, origin, {}};
  S::fields(section, reader);
  for (const auto& [key, value] : j.items()) {
    if (std::find(reader.known.begin(), reader.known.end(), key) != reader.known.end()) continue;
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    std::string msg = origin + ": unknown key \"" + path + "\"";
    const std::string hint = detail::closest(key, reader.known);
    if (!hint.empty()) msg += " (did you mean \"" + (prefix.empty() ? hint : prefix + "." + hint) + "\"?)";
    throw ConfigError(msg);
  }
}

struct Writer {
  json* out;

  template <class T>
  void operator()(const char* key, const T& field, const char*) {
    if constexpr (detail::is_section<T>::value) {
      json inner = json::object();
      Writer w{&inner};
      T::fields(field, w);
      (*out)[key] = std::move(inner);
    } else if constexpr (detail::is_enum_table<T>::value) {
      (*out)[key] = detail::enum_name(field);
    } else {
      (*out)[key] = field;
    }
  }
};

template <class S>
json write_section(const S& s) {
  json j = json::object();
  Writer w{&j};
  S::fields(s, w);
  return j;
}

// Parses an override's text into JSON shaped like the key's current value.
json parse_override_value(const std::string& path, const std::string& text, const json& current) {
  auto fail = [&](const std::string& expected) -> json {
    throw ConfigError("--set " + path + "=" + text + ": expected " + expected);
  };
  switch (current.type()) {
    case json::value_t::boolean:
      if (text == "true" || text == "1") return true;
      if (text == "false" || text == "0") return false;
      return fail("bool (true or false)");
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: {
      try {
        std::size_t used = 0;
        const long long v = std::stoll(text, &used);
        if (used == text.size()) return static_cast<int64_t>(v);
      } catch (const std::exception&) {
      }
      return fail("int");
    }
    case json::value_t::number_float: {
      try {
        std::size_t used = 0;
        const double v = std::stod(text, &used);
        if (used == text.size()) return v;
      } catch (const std::exception&) {
      }
      return fail("float");
    }
    case json::value_t::string: return text;
    case json::value_t::array: {
      std::string body = text;
      if (body.empty() || body.front() != '[') body = "[" + body + "]";
      json parsed = json::parse(body, nullptr, false);
      if (parsed.is_discarded()) return fail("list, e.g. [0,100,500] or 0,100,500");
      return parsed;
    }
    default: return fail("a value");
  }
}

std::vector<std::string> keys_of(const json& object) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : object.items()) keys.push_back(k);
  return keys;
}

}  // namespace

json to_json(const RunConfig& c) { return write_section(c); }
json to_json(const ModelConfig& c) { return write_section(c); }

RunConfig run_config_from_json(const json& j, const std::string& origin) {
  RunConfig c;
  read_section(j, c, "", origin);
  return c;
}

ModelConfig model_config_from_json(const json& j, const std::string& origin) {
  ModelConfig c;
  read_section(j, c, "model", origin);
  return c;
}

void apply_override(RunConfig& c, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError("--set " + assignment + ": expected section.key=value");
  const std::string path = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);

  json j = to_json(c);
  json* node = &j;
  std::string walked;
  std::size_t start = 0;
  while (true) {
    const auto dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object() || !node->contains(part)) {
      std::string msg = "--set: unknown key \"" + path + "\"";
      if (node->is_object()) {
        const std::string hint = detail::closest(part, keys_of(*node));
        if (!hint.empty()) msg += " (did you mean \"" + walked + hint + "\"?)";
      }
      throw ConfigError(msg);
    }
    node = &(*node)[part];
    walked += part + ".";
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (node->is_object()) throw ConfigError("--set " + path + ": is a section, not a key");
  *node = parse_override_value(path, text, *node);
  c = run_config_from_json(j, "--set " + path);
}

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path + ": cannot open file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // e.byte is 1-based and points just past the offending character.
    const std::size_t at = e.byte == 0 ? 0 : std::min<std::size_t>(e.byte - 1, text.size());
    std::size_t line = 1, column = 1;
    for (std::size_t i = 0; i < at; ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    std::string what = e.what();
    const auto colon = what.find("parse error");
    if (colon != std::string::npos) what = what.substr(colon);
    throw ConfigError(path + ":" + std::to_string(line) + ":" + std::to_string(column) +
                      ": malformed JSON (" + what + ")");
  }
}

void write_json_file(const std::string& path, const json& j) { write_file_atomic(path, j.dump(2) + "\n"); }

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  RunConfig c = path.empty() ? RunConfig{} : run_config_from_json(read_json_file(path), path);
  for (const auto& o : overrides) apply_override(c, o);
  resolve(c);
  return c;
}

}  // namespace metalm
