//! The Admin API over HTTP: who may call it, and the shape of every resource.

use missive_store::{KeyKind, Store};
use serde_json::{json, Value};

use super::common::{assert_error, hello, user, TestServer, ADMIN_KEY};

impl TestServer {
    pub fn admin_get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.url))
            .header("x-api-key", ADMIN_KEY)
    }

    pub fn admin_post(&self, path: &str, body: Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.url))
            .header("x-api-key", ADMIN_KEY)
            .json(&body)
    }

    pub async fn admin_json(&self, request: reqwest::RequestBuilder) -> Value {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        response.json().await.unwrap()
    }
}

fn assert_page(page: &Value) {
    assert!(page["data"].is_array(), "{page}");
    assert!(page["has_more"].is_boolean(), "{page}");
    assert!(
        page.get("first_id").is_some() && page.get("last_id").is_some(),
        "{page}"
    );
}

#[tokio::test]
async fn workspace_keys_get_403_admin_keys_cannot_send_messages_and_no_key_is_401() {
    let server = TestServer::start(hello()).await;
    let refused = server.get("/v1/organizations/me").send().await.unwrap();
    let message = assert_error(refused, 403, "permission_error").await;
    assert!(message.contains("admin API key"), "{message}");
    let admin_on_messages = server
        .client
        .post(format!("{}/v1/messages", server.url))
        .header("x-api-key", ADMIN_KEY)
        .json(&json!({"model": "scripted-1", "max_tokens": 5, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_error(admin_on_messages, 403, "permission_error").await;
    let anonymous = server
        .client
        .get(format!("{}/v1/organizations/me", server.url))
        .send()
        .await
        .unwrap();
    assert_error(anonymous, 401, "authentication_error").await;
    let unknown = server
        .client
        .get(format!("{}/v1/organizations/me", server.url))
        .header("x-api-key", "sk-ant-admin01-nope")
        .send()
        .await
        .unwrap();
    assert_error(unknown, 401, "authentication_error").await;
    // A stored admin key works like a configured one.
    let stored = server
        .store
        .create_api_key("ops", KeyKind::Admin, None)
        .unwrap();
    let me = server
        .client
        .get(format!("{}/v1/organizations/me", server.url))
        .header("x-api-key", stored.secret)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
}

#[tokio::test]
async fn organization_and_workspaces_have_the_claude_api_shapes() {
    let server = TestServer::start(hello()).await;
    let me = server
        .admin_json(server.admin_get("/v1/organizations/me"))
        .await;
    assert_eq!(me["type"], "organization");
    assert!(me["id"].as_str().unwrap().len() >= 32);
    assert!(me["name"].is_string());

    let created = server
        .admin_json(server.admin_post("/v1/organizations/workspaces", json!({"name": "research"})))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wrkspc_"), "{created}");
    assert_eq!(created["type"], "workspace");
    assert_eq!(created["name"], "research");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(created["archived_at"], Value::Null);
    assert!(created["display_color"].as_str().unwrap().starts_with('#'));
    assert!(created["data_residency"].is_object());

    let duplicate = server
        .admin_post("/v1/organizations/workspaces", json!({"name": "research"}))
        .send()
        .await
        .unwrap();
    assert_error(duplicate, 400, "invalid_request_error").await;
    let nameless = server
        .admin_post("/v1/organizations/workspaces", json!({"name": ""}))
        .send()
        .await
        .unwrap();
    let message = assert_error(nameless, 400, "invalid_request_error").await;
    assert!(message.starts_with("name:"), "{message}");

    let renamed = server
        .admin_json(server.admin_post(
            &format!("/v1/organizations/workspaces/{id}"),
            json!({"name": "research-2"}),
        ))
        .await;
    assert_eq!(renamed["name"], "research-2");
    let fetched = server
        .admin_json(server.admin_get(&format!("/v1/organizations/workspaces/{id}")))
        .await;
    assert_eq!(fetched, renamed);

    let list = server
        .admin_json(server.admin_get("/v1/organizations/workspaces"))
        .await;
    assert_page(&list);
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "research-2"]);
    let limited = server
        .admin_json(server.admin_get("/v1/organizations/workspaces?limit=1"))
        .await;
    assert_eq!(limited["has_more"], true);
    assert_eq!(limited["data"].as_array().unwrap().len(), 1);

    // Archiving archives the workspace's keys: their next request is 401.
    let key = server
        .store
        .create_api_key("k", KeyKind::Standard, Some(&id))
        .unwrap();
    let archived = server
        .admin_json(server.admin_post(
            &format!("/v1/organizations/workspaces/{id}/archive"),
            json!({}),
        ))
        .await;
    assert!(archived["archived_at"].is_string());
    let after = server
        .client
        .post(format!("{}/v1/messages", server.url))
        .header("x-api-key", key.secret)
        .json(&json!({"model": "scripted-1", "max_tokens": 5, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_error(after, 401, "authentication_error").await;
    let visible = server
        .admin_json(server.admin_get("/v1/organizations/workspaces"))
        .await;
    assert_eq!(visible["data"].as_array().unwrap().len(), 1);
    let all = server
        .admin_json(server.admin_get("/v1/organizations/workspaces?include_archived=true"))
        .await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);

    let missing = server
        .admin_get("/v1/organizations/workspaces/wrkspc_nope")
        .send()
        .await
        .unwrap();
    assert_error(missing, 404, "not_found_error").await;
}

#[tokio::test]
async fn users_and_members_carry_roles_and_refuse_unknown_ones() {
    let server = TestServer::start(hello()).await;
    let ada = server
        .store
        .add_user("ada@example.com", "Ada", "developer")
        .unwrap();
    let users = server
        .admin_json(server.admin_get("/v1/organizations/users"))
        .await;
    assert_page(&users);
    let first = &users["data"][0];
    assert_eq!(first["type"], "user");
    assert_eq!(first["email"], "ada@example.com");
    assert_eq!(first["role"], "developer");
    assert!(first["added_at"].is_string());
    let by_email = server
        .admin_json(server.admin_get("/v1/organizations/users?email=nobody%40example.com"))
        .await;
    assert_eq!(by_email["data"].as_array().unwrap().len(), 0);

    let promoted = server
        .admin_json(server.admin_post(
            &format!("/v1/organizations/users/{}", ada.id),
            json!({"role": "billing"}),
        ))
        .await;
    assert_eq!(promoted["role"], "billing");
    let to_admin = server
        .admin_post(
            &format!("/v1/organizations/users/{}", ada.id),
            json!({"role": "admin"}),
        )
        .send()
        .await
        .unwrap();
    let message = assert_error(to_admin, 400, "invalid_request_error").await;
    assert!(message.starts_with("role:"), "{message}");

    let ws = "wrkspc_default";
    let member = server
        .admin_json(server.admin_post(
            &format!("/v1/organizations/workspaces/{ws}/members"),
            json!({"user_id": ada.id, "workspace_role": "workspace_developer"}),
        ))
        .await;
    assert_eq!(
        member,
        json!({"type": "workspace_member", "user_id": ada.id, "workspace_id": ws, "workspace_role": "workspace_developer"})
    );
    let bad_role = server
        .admin_post(
            &format!("/v1/organizations/workspaces/{ws}/members/{}", ada.id),
            json!({"workspace_role": "owner"}),
        )
        .send()
        .await
        .unwrap();
    let message = assert_error(bad_role, 400, "invalid_request_error").await;
    assert!(message.starts_with("workspace_role:"), "{message}");
    let updated = server
        .admin_json(server.admin_post(
            &format!("/v1/organizations/workspaces/{ws}/members/{}", ada.id),
            json!({"workspace_role": "workspace_admin"}),
        ))
        .await;
    assert_eq!(updated["workspace_role"], "workspace_admin");
    let members = server
        .admin_json(server.admin_get(&format!("/v1/organizations/workspaces/{ws}/members")))
        .await;
    assert_page(&members);
    assert_eq!(members["data"][0]["user_id"], ada.id.as_str());
    let removed = server
        .client
        .delete(format!(
            "{}/v1/organizations/workspaces/{ws}/members/{}",
            server.url, ada.id
        ))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(removed["type"], "workspace_member_deleted");
    let deleted = server
        .client
        .delete(format!("{}/v1/organizations/users/{}", server.url, ada.id))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(deleted, json!({"id": ada.id, "type": "user_deleted"}));
    let gone = server
        .admin_get(&format!("/v1/organizations/users/{}", ada.id))
        .send()
        .await
        .unwrap();
    assert_error(gone, 404, "not_found_error").await;
}

#[tokio::test]
async fn api_keys_are_listed_retrieved_and_deactivated_at_once() {
    let server = TestServer::start(hello()).await;
    let key = server
        .store
        .create_api_key("ci", KeyKind::Standard, None)
        .unwrap();
    server
        .store
        .create_api_key("ops", KeyKind::Admin, None)
        .unwrap();
    let list = server
        .admin_json(server.admin_get("/v1/organizations/api_keys"))
        .await;
    assert_page(&list);
    let keys = list["data"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "admin keys are not listed: {list}");
    let shown = &keys[0];
    assert_eq!(shown["id"], key.key.id.as_str());
    assert_eq!(shown["type"], "api_key");
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["workspace_id"], "wrkspc_default");
    assert!(shown["partial_key_hint"]
        .as_str()
        .unwrap()
        .starts_with("sk-ant-api03-"));
    assert!(
        !shown.to_string().contains(&key.secret),
        "the secret leaked"
    );
    assert!(shown["created_by"]["type"].is_string());

    let send = || {
        server
            .client
            .post(format!("{}/v1/messages", server.url))
            .header("x-api-key", key.secret.clone())
            .json(&json!({"model": "scripted-1", "max_tokens": 5, "messages": user("hi")}))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    let path = format!("/v1/organizations/api_keys/{}", key.key.id);
    let updated = server
        .admin_json(server.admin_post(&path, json!({"status": "inactive", "name": "ci-old"})))
        .await;
    assert_eq!(updated["status"], "inactive");
    assert_eq!(updated["name"], "ci-old");
    assert_error(send().await.unwrap(), 401, "authentication_error").await;
    let fetched = server.admin_json(server.admin_get(&path)).await;
    assert_eq!(fetched, updated);
    let inactive = server
        .admin_json(server.admin_get("/v1/organizations/api_keys?status=active"))
        .await;
    assert_eq!(inactive["data"].as_array().unwrap().len(), 0);
    let bad = server
        .admin_get("/v1/organizations/api_keys?status=sleeping")
        .send()
        .await
        .unwrap();
    let message = assert_error(bad, 400, "invalid_request_error").await;
    assert!(message.starts_with("status:"), "{message}");
    let bad_limit = server
        .admin_get("/v1/organizations/api_keys?limit=0")
        .send()
        .await
        .unwrap();
    let message = assert_error(bad_limit, 400, "invalid_request_error").await;
    assert!(message.starts_with("limit:"), "{message}");

    // Every change above is in the audit log, with the admin key as the actor.
    let log = server.store.audit_log(10).unwrap();
    assert_eq!(log[0].action, "api_key.update");
    assert_eq!(log[0].target, key.key.id);
    assert_eq!(log[0].actor, "apikey_configured_admin");
}
