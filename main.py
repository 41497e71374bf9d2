import typer
app = typer.Typer()
@app.command()
def hello():
    print("hi")
if __name__ == "__main__":
    app()
