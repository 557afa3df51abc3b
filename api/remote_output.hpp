#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

// keel-remote's output for people, from the API's JSON. Tolerant: a field that is missing or of
// another type (a newer or older keel) prints as "?" instead of failing.
namespace keel::api {

std::string format_ping(const nlohmann::json& ping);
// State, vCPUs, memory, payload, devices, and one block per DMA container.
std::string format_info(const nlohmann::json& info);
std::string format_counters(const nlohmann::json& counters);
std::string format_added_device(const nlohmann::json& device);
// What a 204 did, for the command that got it: "VM booted".
std::string format_done(std::string_view command);
// The message of an error answer: its "message" field, else the body itself, else the status.
std::string format_error(unsigned status, const std::string& body);

}  // namespace keel::api
