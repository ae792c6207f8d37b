//! The OpenAPI document cannot drift unnoticed: it is generated from the
//! handlers and types, and any change to it shows in this snapshot.
#![allow(clippy::unwrap_used)]

#[test]
fn openapi_document_is_stable() {
    let doc = vmfabric_server::openapi::document();
    // Every route of the API is documented, with the errors it can return.
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/clusters",
        "/api/v1/clusters/{name}/vms",
        "/api/v1/nodes/{name}/plan",
        "/api/v1/addresses/{ip}/history",
        "/api/v1/tokens/{id}",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} is not in the document");
    }
    let create = &doc["paths"]["/api/v1/clusters/{name}/vms"]["post"];
    for code in ["201", "401", "403", "404", "409", "422"] {
        assert!(create["responses"][code].is_object(), "no {code}");
    }
    insta::assert_snapshot!(serde_json::to_string_pretty(&doc).unwrap());
}
