//! The OpenAPI document of `/api/v1`, generated from the handlers'
//! annotations and the types' schemas (snapshot-tested in
//! tests/openapi.rs, so a change to the API shows up in review).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::api;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "vmfabric",
        description = "IP address management and network control for KVM/LXD clusters: clusters (switching, routing, ip-fabric), networks, nodes, VMs and their addresses, node plans for agents.",
        license(name = "Apache-2.0")
    ),
    paths(
        api::openapi, api::revision, api::clusters, api::create_cluster, api::cluster,
        api::update_cluster, api::delete_cluster, api::rr_config, api::add_network, api::update_network, api::remove_network,
        api::networks, api::nodes, api::add_node, api::node, api::update_node, api::remove_node, api::add_node_block, api::add_node_ipv6, api::remove_node_ipv6,
        api::remove_node_block, api::plan,
        api::plan_file, api::plan_input, api::report_status, api::agents, api::vms,
        api::create_vm, api::create_vms, api::vm, api::delete_vm, api::migrate_vm, api::add_nic, api::remove_nic,
        api::add_vm_address, api::remove_vm_address,
        api::guest_config, api::addresses, api::free_space, api::reserve, api::release,
        api::agent_status, api::history, api::usage, api::block_map, api::check, api::tokens, api::create_token,
        api::revoke_token, api::changes, api::metrics
    ),
    components(schemas(
        crate::problem::ProblemDoc,
        api::RrFormatDoc,
        api::PlanFormatDoc,
        api::GuestFormatDoc
    )),
    modifiers(&Common),
    security(("bearer" = []))
)]
struct Doc;

/// The bearer scheme, and the error answers every call can give.
struct Common;

impl Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("a token of `vmfabric token create`"))
                    .build(),
            ),
        );
        let problem = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/problem+json",
                    Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "Problem",
                    )))),
                )
                .build()
        };
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                for (code, what) in [
                    ("401", "No valid token"),
                    ("403", "The token's role may not do this"),
                    ("404", "An object named in the request does not exist"),
                    (
                        "409",
                        "Conflicts with the current state, or the pool is exhausted",
                    ),
                    ("422", "Invalid input: the field, the value and the rule"),
                    (
                        "431",
                        "The request head is larger than the controller takes",
                    ),
                    ("500", "Storage error"),
                    ("503", "Unavailable: the store cannot be reached right now"),
                ] {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| problem(what).into());
                }
                if op.request_body.is_some() {
                    for (code, what) in [
                        ("408", "The body did not arrive in time"),
                        ("413", "The body is larger than the controller takes"),
                        ("415", "The body is not application/json"),
                    ] {
                        op.responses
                            .responses
                            .entry(code.to_string())
                            .or_insert_with(|| problem(what).into());
                    }
                }
            }
        }
    }
}

/// The document as served.
pub fn document() -> serde_json::Value {
    serde_json::to_value(Doc::openapi()).unwrap_or_default()
}
