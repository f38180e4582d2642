//! The generator writes what the service would: here, a registration's data key.

#![allow(clippy::unwrap_used)]

use chrono::Utc;
use domain::UserId;
use secrecy::ExposeSecret;

use super::*;

/// The key now rides in the registration's append (`SideWrite::DataKey`) instead of a write
/// of its own: every generated person must still have one stored.
#[tokio::test]
async fn every_generated_person_has_their_data_key_stored() {
    let dir = std::env::temp_dir().join(format!("generate-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("log.db").display());
    let store = infra::store::connect(&url).await.unwrap();
    let master = infra::crypto::MasterKey::generate().to_base64();
    let keys = Arc::new(
        Keys::open(store.as_ref(), master.expose_secret())
            .await
            .unwrap(),
    );
    let mut population = Population::new(Naming::Own, Mix::Share(0.5));
    let generated = run(store.clone(), &mut population, 200, 2, Utc::now(), keys)
        .await
        .unwrap();
    assert!(generated.people > 0);
    let people: Vec<&Person> = population.shards.iter().flatten().collect();
    assert_eq!(people.len() as u64, generated.people);
    for person in people {
        let key = store.data_key(UserId::from_uuid(person.id)).await.unwrap();
        assert!(key.is_some(), "no data key for {}", person.id);
    }
    drop(store);
    std::fs::remove_dir_all(dir).unwrap();
}
