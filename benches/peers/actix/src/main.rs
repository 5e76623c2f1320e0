//! actix-web 4 hello world with one worker, for `benches/hello_vs_nginx.py --peers actix`.
//! Usage: peer-actix 127.0.0.1:PORT
use actix_web::{web, App, HttpResponse, HttpServer};

async fn hello() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Server", "actix"))
        .content_type("text/plain")
        .body("Hello World!")
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).expect("usage: peer-actix ADDR");
    HttpServer::new(|| App::new().default_service(web::to(hello)))
        .workers(1)
        .bind(addr)?
        .run()
        .await
}
