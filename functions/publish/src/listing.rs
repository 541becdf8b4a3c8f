//! A page of a connection's posts (`GET .../posts`): up to [`PAGE`] posts
//! (of the status asked), newest first, and where the next page starts only
//! when more posts follow. Made of the store's reads, which answer as
//! DynamoDB's query does: a read stops at its limit (saying where, even when
//! nothing follows) and filters by status only the posts it read. So a page
//! reads one post more than it holds, to know whether another follows, and a
//! filtered page reads on until it is full or the posts end, bounded by
//! [`MAX_READS`].

use shared::store::StoreError;

use crate::api_store::PostsApi;
use crate::post::Post;
use crate::store::{place, Place};

/// Posts one page holds at most.
pub const PAGE: usize = 50;
/// Posts one read of a filtered page asks for (most may not match).
pub const FILTERED_READ: usize = 200;
/// Reads one page makes at most: a filtered page whose status is rare reads
/// 1,000 posts, then answers with what it found and where it stopped.
pub const MAX_READS: usize = 5;

/// A page of a connection's posts and the place the next page starts after.
pub type Page = (Vec<Post>, Option<Place>);

/// The page of `owner`'s posts (`store::owner_key`) after `cursor`.
pub async fn page<S: PostsApi>(
    store: &S,
    owner: &str,
    status: Option<&str>,
    cursor: Option<Place>,
) -> Result<Page, StoreError> {
    let mut posts: Vec<Post> = Vec::new();
    let mut after = cursor;
    for _ in 0..MAX_READS {
        // One more than the page: whether another post follows.
        let limit = match status {
            Some(_) => FILTERED_READ,
            None => PAGE + 1 - posts.len(),
        };
        let read = store.read_posts(owner, status, after, limit).await?;
        posts.extend(read.posts);
        if posts.len() > PAGE {
            posts.truncate(PAGE);
            let next = posts.last().map(place);
            return Ok((posts, next));
        }
        match read.stopped_at {
            Some(at) => after = Some(at),
            None => return Ok((posts, None)),
        }
    }
    Ok((posts, after))
}
