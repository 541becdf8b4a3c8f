//! Records what each DynamoDB request asks of IAM: the action (per item of a
//! transaction or batch, as DynamoDB authorizes it), the table and index, the
//! key values and the attribute names it touches. `tests/tests/iam.rs` checks
//! every recorded request of a function against that function's policy in
//! `template.yaml`, so a policy narrower than the code fails a test.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::Intercept;
use aws_sdk_dynamodb::operation::{
    batch_get_item::BatchGetItemInput, batch_write_item::BatchWriteItemInput,
    delete_item::DeleteItemInput, get_item::GetItemInput, put_item::PutItemInput,
    query::QueryInput, scan::ScanInput, transact_get_items::TransactGetItemsInput,
    transact_write_items::TransactWriteItemsInput, update_item::UpdateItemInput,
};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_types::config_bag::ConfigBag;

type Item = HashMap<String, AttributeValue>;
type Names = HashMap<String, String>;

/// One request (or one item of a transaction or batch), as IAM sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    /// `dynamodb:GetItem`, `dynamodb:PutItem`, ...
    pub action: &'static str,
    pub table: String,
    pub index: Option<String>,
    /// String and number values by attribute name: the key (a put's whole
    /// item; a query's `name = :value` key conditions).
    pub values: BTreeMap<String, String>,
    /// Every attribute name it names: item, key, expressions.
    pub attributes: BTreeSet<String>,
}

/// The requests made through a client from [`Requests::dynamodb`].
#[derive(Clone, Debug, Default)]
pub struct Requests(Arc<Mutex<Vec<Asked>>>);

impl Requests {
    /// A DynamoDB client on `aws` whose requests are recorded here.
    pub fn dynamodb(&self, aws: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::config::Builder::from(aws).interceptor(self.clone());
        aws_sdk_dynamodb::Client::from_conf(conf.build())
    }

    /// What was asked so far, and a fresh start.
    pub fn take(&self) -> Vec<Asked> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

impl Intercept for Requests {
    fn name(&self) -> &'static str {
        "RecordRequests"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let asked = asked(context.input());
        self.0.lock().unwrap().extend(asked);
        Ok(())
    }
}

fn text(v: &AttributeValue) -> Option<String> {
    match v {
        AttributeValue::S(s) => Some(s.clone()),
        AttributeValue::N(n) => Some(n.clone()),
        _ => None,
    }
}

fn values(item: Option<&Item>) -> BTreeMap<String, String> {
    item.into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), text(v)?)))
        .collect()
}

/// Attribute names in expressions: `#placeholders` through `names`, bare
/// identifiers that are not functions or keywords.
fn expression_names(expressions: &[Option<&str>], names: Option<&Names>) -> BTreeSet<String> {
    const WORDS: &[&str] = &[
        "SET",
        "REMOVE",
        "ADD",
        "DELETE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "BETWEEN",
        "attribute_exists",
        "attribute_not_exists",
        "attribute_type",
        "begins_with",
        "contains",
        "size",
        "if_not_exists",
        "list_append",
    ];
    let mut out: BTreeSet<String> = names
        .into_iter()
        .flatten()
        .map(|(_, v)| v.clone())
        .collect();
    for e in expressions.iter().flatten() {
        let mut word = String::new();
        let mut prefix = ' ';
        for c in e.chars().chain([' ']) {
            if c.is_ascii_alphanumeric() || c == '_' {
                if word.is_empty() && prefix == ' ' {
                    prefix = '.';
                }
                word.push(c);
                continue;
            }
            if !word.is_empty() && prefix == '.' && !WORDS.contains(&word.as_str()) {
                out.insert(std::mem::take(&mut word));
            }
            word.clear();
            prefix = if c == ':' || c == '#' { c } else { ' ' };
        }
    }
    out
}

fn one(
    action: &'static str,
    table: Option<&str>,
    values: BTreeMap<String, String>,
    mut attributes: BTreeSet<String>,
) -> Asked {
    attributes.extend(values.keys().cloned());
    Asked {
        action,
        table: table.unwrap_or_default().to_string(),
        index: None,
        values,
        attributes,
    }
}

/// `name = :value` pairs of a key condition.
fn key_conditions(
    expression: &str,
    bound: Option<&Item>,
    names: Option<&Names>,
) -> BTreeMap<String, String> {
    expression
        .split(" AND ")
        .filter_map(|c| {
            let (name, value) = c.split_once('=')?;
            let name = name.trim();
            let name = names.and_then(|n| n.get(name)).map_or(name, String::as_str);
            Some((name.to_string(), text(bound?.get(value.trim())?)?))
        })
        .collect()
}

type Input = aws_smithy_runtime_api::client::interceptors::context::Input;

/// What one SDK input type asks, or `None` for an input of another type.
type Kind = fn(&Input) -> Option<Vec<Asked>>;

/// What each SDK input type asks; the first that recognises the input says.
const KINDS: &[Kind] = &[
    get_item,
    put_item,
    update_item,
    delete_item,
    query,
    scan,
    transact_write_items,
    transact_get_items,
    batch_get_item,
    batch_write_item,
];

fn asked(input: &Input) -> Vec<Asked> {
    KINDS
        .iter()
        .find_map(|kind| kind(input))
        .unwrap_or_else(|| {
            // Anything else (table administration): recorded as unknown, so a test
            // notices it.
            vec![one("dynamodb:?", None, BTreeMap::new(), BTreeSet::new())]
        })
}

fn get_item(input: &Input) -> Option<Vec<Asked>> {
    let i = input.downcast_ref::<GetItemInput>()?;
    let names = expression_names(&[i.projection_expression()], i.expression_attribute_names());
    Some(vec![one(
        "dynamodb:GetItem",
        i.table_name(),
        values(i.key()),
        names,
    )])
}

fn put_item(input: &Input) -> Option<Vec<Asked>> {
    let i = input.downcast_ref::<PutItemInput>()?;
    let names = expression_names(&[i.condition_expression()], i.expression_attribute_names());
    let mut a = one("dynamodb:PutItem", i.table_name(), values(i.item()), names);
    a.attributes
        .extend(i.item().into_iter().flatten().map(|(k, _)| k.clone()));
    Some(vec![a])
}

fn update_item(input: &Input) -> Option<Vec<Asked>> {
    let i = input.downcast_ref::<UpdateItemInput>()?;
    let names = expression_names(
        &[i.update_expression(), i.condition_expression()],
        i.expression_attribute_names(),
    );
    Some(vec![one(
        "dynamodb:UpdateItem",
        i.table_name(),
        values(i.key()),
        names,
    )])
}

fn delete_item(input: &Input) -> Option<Vec<Asked>> {
    let i = input.downcast_ref::<DeleteItemInput>()?;
    let names = expression_names(&[i.condition_expression()], i.expression_attribute_names());
    Some(vec![one(
        "dynamodb:DeleteItem",
        i.table_name(),
        values(i.key()),
        names,
    )])
}

fn query(input: &Input) -> Option<Vec<Asked>> {
    let i = input.downcast_ref::<QueryInput>()?;
    let keys = key_conditions(
        i.key_condition_expression().unwrap_or_default(),
        i.expression_attribute_values(),
        i.expression_attribute_names(),
    );
    let names = expression_names(
        &[i.filter_expression(), i.projection_expression()],
        i.expression_attribute_names(),
    );
    let mut a = one("dynamodb:Query", i.table_name(), keys, names);
    a.index = i.index_name().map(str::to_string);
    Some(vec![a])
}

fn scan(input: &Input) -> Option<Vec<Asked>> {
    let i = input.downcast_ref::<ScanInput>()?;
    let mut a = one(
        "dynamodb:Scan",
        i.table_name(),
        BTreeMap::new(),
        BTreeSet::new(),
    );
    a.index = i.index_name().map(str::to_string);
    Some(vec![a])
}

fn transact_write_items(input: &Input) -> Option<Vec<Asked>> {
    let i = input.downcast_ref::<TransactWriteItemsInput>()?;
    Some(
        i.transact_items()
            .iter()
            .filter_map(transact_write)
            .collect(),
    )
}

/// One item of a transaction write.
fn transact_write(t: &TransactWriteItem) -> Option<Asked> {
    if let Some(p) = t.put() {
        let mut a = one(
            "dynamodb:PutItem",
            Some(p.table_name()),
            values(Some(p.item())),
            expression_names(&[p.condition_expression()], p.expression_attribute_names()),
        );
        a.attributes.extend(p.item().keys().cloned());
        return Some(a);
    }
    if let Some(u) = t.update() {
        return Some(one(
            "dynamodb:UpdateItem",
            Some(u.table_name()),
            values(Some(u.key())),
            expression_names(
                &[Some(u.update_expression()), u.condition_expression()],
                u.expression_attribute_names(),
            ),
        ));
    }
    if let Some(d) = t.delete() {
        return Some(one(
            "dynamodb:DeleteItem",
            Some(d.table_name()),
            values(Some(d.key())),
            expression_names(&[d.condition_expression()], d.expression_attribute_names()),
        ));
    }
    let c = t.condition_check()?;
    Some(one(
        "dynamodb:ConditionCheckItem",
        Some(c.table_name()),
        values(Some(c.key())),
        expression_names(
            &[Some(c.condition_expression())],
            c.expression_attribute_names(),
        ),
    ))
}

fn transact_get_items(input: &Input) -> Option<Vec<Asked>> {
    let i = input.downcast_ref::<TransactGetItemsInput>()?;
    Some(
        i.transact_items()
            .iter()
            .filter_map(|t| {
                let g = t.get()?;
                Some(one(
                    "dynamodb:GetItem",
                    Some(g.table_name()),
                    values(Some(g.key())),
                    BTreeSet::new(),
                ))
            })
            .collect(),
    )
}

fn batch_get_item(input: &Input) -> Option<Vec<Asked>> {
    let i = input.downcast_ref::<BatchGetItemInput>()?;
    Some(
        i.request_items()
            .into_iter()
            .flatten()
            .flat_map(|(table, ka)| {
                ka.keys()
                    .iter()
                    .map(|k| {
                        one(
                            "dynamodb:BatchGetItem",
                            Some(table),
                            values(Some(k)),
                            BTreeSet::new(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect(),
    )
}

fn batch_write_item(input: &Input) -> Option<Vec<Asked>> {
    let i = input.downcast_ref::<BatchWriteItemInput>()?;
    Some(
        i.request_items()
            .into_iter()
            .flatten()
            .flat_map(|(table, writes)| {
                writes
                    .iter()
                    .map(|w| {
                        let item = w
                            .put_request()
                            .map(|p| p.item())
                            .or(w.delete_request().map(|d| d.key()));
                        one(
                            "dynamodb:BatchWriteItem",
                            Some(table),
                            values(item),
                            BTreeSet::new(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_name_their_attributes_not_their_values_or_functions() {
        let names = Names::from([("#status".to_string(), "status".to_string())]);
        let got = expression_names(
            &[
                Some("SET #status = :s, version = version + :one REMOVE due_bucket, due_at"),
                Some("attribute_exists(pk) AND begins_with(sk, :conn) AND size(token) > :n"),
            ],
            Some(&names),
        );
        let want: BTreeSet<String> = [
            "status",
            "version",
            "due_bucket",
            "due_at",
            "pk",
            "sk",
            "token",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_key_condition_gives_the_values_it_binds() {
        let bound = Item::from([
            (":pk".to_string(), AttributeValue::S("USER#u".into())),
            (":conn".to_string(), AttributeValue::S("CONN#".into())),
        ]);
        let got = key_conditions("pk = :pk AND begins_with(sk, :conn)", Some(&bound), None);
        assert_eq!(
            got,
            BTreeMap::from([("pk".to_string(), "USER#u".to_string())])
        );
    }
}
