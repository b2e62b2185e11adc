//! What the derived OpenAPI document cannot say by itself, added so that it states
//! exactly what the server accepts (`docs/api.md`, "Conformance with the document"):
//! a cart line (and a shopper's line) names exactly one of `sku` or `barcode`; a checkout gives `payment` or
//! `payments`, not both; a barcode is a GTIN whose check digit is right (`format:
//! gtin`, a custom format: the conformance run teaches it to the fuzzer). And the
//! links between operations a client (or a stateful fuzzer) follows: a checkout's
//! `sale_id` is the `id` of the sale, its refunds and its reprint.

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, AllOfBuilder, AnyOfBuilder, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, Type,
};
use utoipa::openapi::{OpenApi, RefOr};

/// The custom format of a barcode: GTIN-8/12/13/14 digits with a right GS1 check digit.
pub const GTIN_FORMAT: &str = "gtin";

/// The document's additions (see the module's doc).
pub struct Exact;

impl utoipa::Modify for Exact {
    fn modify(&self, openapi: &mut OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            if let Some(line) = components.schemas.get_mut("LineRequest") {
                set_format(line, "barcode", GTIN_FORMAT);
                let original = std::mem::replace(line, RefOr::T(Schema::default()));
                *line = RefOr::T(Schema::AllOf(
                    AllOfBuilder::new()
                        .item(original)
                        .item(exactly_one_of("sku", "barcode"))
                        .build(),
                ));
            }
            // A shopper's line too names exactly one product code.
            if let Some(line) = components.schemas.get_mut("AddLine") {
                let original = std::mem::replace(line, RefOr::T(Schema::default()));
                *line = RefOr::T(Schema::AllOf(
                    AllOfBuilder::new()
                        .item(original)
                        .item(exactly_one_of("sku", "barcode"))
                        .build(),
                ));
            }
            // Each tender refuses fields its method does not have.
            if let Some(RefOr::T(Schema::OneOf(tender))) =
                components.schemas.get_mut("TenderRequest")
            {
                for item in &mut tender.items {
                    if let RefOr::T(Schema::Object(o)) = item {
                        o.additional_properties =
                            Some(Box::new(AdditionalProperties::FreeForm(false)));
                    }
                }
            }
            // A line number of a sale: the server reads it as an unsigned 32-bit number.
            if let Some(RefOr::T(Schema::Object(line))) =
                components.schemas.get_mut("RefundLineRequest")
                && let Some(RefOr::T(Schema::Object(n))) = line.properties.get_mut("line")
            {
                n.maximum = Some(utoipa::Number::UInt(u32::MAX as usize));
            }
            // Examples a client (or the fuzzer's first phase) can send as they are to
            // `outpost demo`, whose catalog has these products.
            example(
                components.schemas.get_mut("CartRequest"),
                serde_json::json!({"lines": [{"sku": "SKU-000001", "quantity": 2}, {"barcode": "2900000000025"}]}),
            );
            example(
                components.schemas.get_mut("CheckoutRequest"),
                serde_json::json!({
                    "lines": [{"sku": "SKU-000001", "quantity": 2}],
                    "payment": {"method": "cash", "tendered": 5000}
                }),
            );
            if let Some(checkout) = components.schemas.get_mut("CheckoutRequest") {
                let original = std::mem::replace(checkout, RefOr::T(Schema::default()));
                *checkout = RefOr::T(Schema::AllOf(
                    AllOfBuilder::new()
                        .item(original)
                        .item(not_both("payment", "payments"))
                        .build(),
                ));
            }
        }
        if let Some(item) = openapi.paths.paths.get_mut("/api/v1/checkout")
            && let Some(op) = item.post.as_mut()
            && let Some(RefOr::T(created)) = op.responses.responses.get_mut("201")
        {
            for (name, operation) in [
                ("GetSale", "get_sale"),
                ("Refund", "post_refund"),
                ("Reprint", "reprint"),
            ] {
                created.links.insert(
                    name.to_owned(),
                    RefOr::T(
                        LinkBuilder::new()
                            .operation_id(operation)
                            .parameter("id", "$response.body#/sale_id")
                            .build(),
                    ),
                );
            }
        }
        for path in ["/api/v1/products", "/api/v1/shopper/products"] {
            if let Some(item) = openapi.paths.paths.get_mut(path)
                && let Some(op) = item.get.as_mut()
            {
                for p in op.parameters.iter_mut().flatten() {
                    if p.name == "barcode"
                        && let Some(schema) = p.schema.as_mut()
                    {
                        set_format_of(schema, GTIN_FORMAT);
                    }
                }
            }
        }
    }
}

fn example(schema: Option<&mut RefOr<Schema>>, value: serde_json::Value) {
    if let Some(RefOr::T(Schema::Object(o))) = schema {
        o.examples = vec![value];
    }
}

fn set_format(schema: &mut RefOr<Schema>, property: &str, format: &str) {
    if let RefOr::T(Schema::Object(o)) = schema
        && let Some(p) = o.properties.get_mut(property)
    {
        set_format_of(p, format);
    }
}

fn set_format_of(schema: &mut RefOr<Schema>, format: &str) {
    if let RefOr::T(Schema::Object(o)) = schema {
        o.format = Some(SchemaFormat::Custom(format.to_owned()));
    }
}

/// `a` given (a string) and `b` absent or null, or the other way round.
fn exactly_one_of(a: &str, b: &str) -> Schema {
    let branch = |given: &str, other: &str| {
        ObjectBuilder::new()
            .property(given, ObjectBuilder::new().schema_type(Type::String))
            .property(other, ObjectBuilder::new().schema_type(Type::Null))
            .required(given)
    };
    Schema::OneOf(
        OneOfBuilder::new()
            .item(branch(a, b))
            .item(branch(b, a))
            .description(Some(format!("exactly one of `{a}` or `{b}`")))
            .build(),
    )
}

/// Not both `a` and `b` with a value: one of them absent or null.
fn not_both(a: &str, b: &str) -> Schema {
    let null = |name: &str| {
        ObjectBuilder::new().property(name, ObjectBuilder::new().schema_type(Type::Null))
    };
    Schema::AnyOf(
        AnyOfBuilder::new()
            .item(null(a))
            .item(null(b))
            .description(Some(format!("`{a}` or `{b}`, not both")))
            .build(),
    )
}

/// The document as served: every write documents `507 storage_full`; and utoipa 5.5
/// writes a link's fields in snake case (`operation_id`) where OpenAPI names them in
/// camel case (`operationId`).
pub fn document() -> serde_json::Value {
    let mut doc =
        serde_json::to_value(<super::ApiDoc as utoipa::OpenApi>::openapi()).unwrap_or_default();
    // Every operation that writes can find the data disk down to its reserve.
    let writes = doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.iter_mut())
        .filter(|(method, _)| matches!(method.as_str(), "post" | "put" | "patch" | "delete"))
        .filter_map(|(_, op)| {
            op.get_mut("responses")
                .and_then(serde_json::Value::as_object_mut)
        });
    for responses in writes {
        responses.entry("507").or_insert_with(|| {
            serde_json::json!({
                "description": "`storage_full`: the data disk is down to its reserve \
                    (`storage.reserve_mib`); nothing was written. Retry with the same \
                    Idempotency-Key once space is freed (`Retry-After`).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
            })
        });
    }
    let responses = doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|op| {
            op.get_mut("responses")
                .and_then(serde_json::Value::as_object_mut)
        })
        .flat_map(|r| r.values_mut());
    for response in responses {
        let Some(links) = response
            .get_mut("links")
            .and_then(serde_json::Value::as_object_mut)
        else {
            continue;
        };
        for link in links
            .values_mut()
            .filter_map(serde_json::Value::as_object_mut)
        {
            for (snake, camel) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(v) = link.remove(snake) {
                    link.insert(camel.to_owned(), v);
                }
            }
        }
    }
    doc
}
